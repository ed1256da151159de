"""Blocking twins of issue 15's operations: the scheduler, the pruner and pausing a domain
run the core's code on a SyncRuntime, from plain threads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import Retention, Schedule
from commandbus_sync import (
    SyncCommandBus,
    SyncPruner,
    SyncRuntime,
    SyncScheduler,
    SyncWorker,
    list_paused,
    list_schedules,
    pause_domain,
    resume_domain,
)

DOMAIN = "orders"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 10, 10, 0, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_sync_scheduler_sends_each_tick_once(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str, sync_bus: SyncCommandBus
) -> None:
    clock = Clock()
    schedule = Schedule("minutely", domain=DOMAIN, command_type="Report", every=60)
    schedulers = [
        SyncScheduler(
            pool=sync_pool, schedules=[schedule], schema=schema, now=clock, runtime=runtime
        )
        for _ in range(2)
    ]
    assert [s.run_due() for s in schedulers] == [[], []]
    clock.now += timedelta(minutes=1)
    sent = [c for s in schedulers for c in s.run_due()]
    assert len(sent) == 1 and sent[0].command_id is not None
    assert sync_bus.get_command(DOMAIN, sent[0].command_id) is not None
    (state,) = list_schedules(sync_pool, runtime=runtime, schema=schema)
    assert state.last_command_id == sent[0].command_id
    assert schedulers[0].next_runs(clock.now)[0][1] == datetime(2026, 3, 10, 10, 2, tzinfo=UTC)


def test_sync_scheduler_runs_and_stops(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> None:
    every = Schedule("every-second", domain=DOMAIN, command_type="Tick", every=1)
    scheduler = SyncScheduler(pool=sync_pool, schedules=[every], schema=schema, runtime=runtime)
    scheduler.run(block=False)
    assert scheduler.running
    scheduler.stop()
    assert not scheduler.running
    assert [s.name for s in list_schedules(sync_pool, runtime=runtime, schema=schema)] == [
        "every-second"
    ]


def test_sync_pruner_deletes_old_finished_commands(
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    schema: str,
    sync_bus: SyncCommandBus,
    database_url: str,
) -> None:
    command_id = uuid.uuid4()
    sync_bus.send(DOMAIN, "Work", command_id, {})
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET status = 'COMPLETED', updated_at = now() - interval '8 days'"
            ).format(sql.Identifier(schema, "commands"))
        )
    pruner = SyncPruner(pool=sync_pool, retention=Retention(), schema=schema, runtime=runtime)
    counted = pruner.prune(dry_run=True)
    assert counted is not None and counted.commands == 1
    done = pruner.prune()
    assert done is not None and done.commands == 1
    assert sync_bus.get_command(DOMAIN, command_id) is None


def test_sync_pause_and_resume(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> None:
    paused = pause_domain(
        sync_pool, DOMAIN, operator="ops", reason="incident", runtime=runtime, schema=schema
    )
    assert paused.domain == DOMAIN
    assert [p.reason for p in list_paused(sync_pool, runtime=runtime, schema=schema)] == [
        "incident"
    ]
    assert resume_domain(sync_pool, DOMAIN, runtime=runtime, schema=schema)
    assert list_paused(sync_pool, runtime=runtime, schema=schema) == []


def test_sync_worker_runs_schedules_and_can_turn_retention_off(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> None:
    from commandbus import HandlerRegistry

    registry = HandlerRegistry()
    registry.register(DOMAIN, "Tick", lambda command, ctx: None)
    every = Schedule("tick", domain=DOMAIN, command_type="Tick", every=60)
    worker = SyncWorker(
        pool=sync_pool,
        domain=DOMAIN,
        registry=registry,
        schema=schema,
        runtime=runtime,
        schedules=[every],
        retention=None,
    )
    assert worker.worker.pruner is None and worker.worker.scheduler is not None
    default = SyncWorker(pool=sync_pool, domain=DOMAIN, registry=registry, runtime=runtime)
    assert default.worker.pruner is not None and default.worker.scheduler is None
