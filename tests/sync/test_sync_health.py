"""The blocking twins of list_workers and check_health: same results as the core, run on
a SyncRuntime; a SyncWorker registers like an async one."""

from __future__ import annotations

import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

import commandbus_sync
from commandbus import HandlerRegistry, ValidationError
from commandbus_sync import SyncCommandBus, SyncRuntime, SyncWorker, check_health, list_workers
from sync.helpers import wait_until

DOMAIN = "jobs"


def test_a_sync_worker_is_registered_and_healthy_while_it_runs(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> None:
    worker = SyncWorker(
        pool=sync_pool,
        domain=DOMAIN,
        registry=HandlerRegistry(),
        runtime=runtime,
        schema=schema,
        concurrency=2,
    )
    worker.run(block=False)
    try:
        (row,) = wait_until(
            lambda: list_workers(sync_pool, runtime=runtime, schema=schema, domain=DOMAIN),
            what="the worker to register",
        )
        assert row.id == worker.worker.name and row.kind == "worker" and not row.stale
        report = check_health(
            sync_pool, runtime=runtime, schema=schema, domain=DOMAIN, max_troubleshooting=0
        )
        assert report.ok, report
        assert [c.name for c in report.checks] == [
            "database",
            "migrations",
            "workers",
            "paused",
            "pending",
            "troubleshooting",
        ]
    finally:
        worker.stop()
    assert list_workers(sync_pool, runtime=runtime, schema=schema) == []
    assert not check_health(sync_pool, runtime=runtime, schema=schema, domain=DOMAIN).ok


def test_the_twins_raise_the_cores_errors(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> None:
    with pytest.raises(ValidationError, match="kind"):
        list_workers(sync_pool, runtime=runtime, schema=schema, kind="robot")
    with pytest.raises(ValidationError, match="max_troubleshooting"):
        check_health(sync_pool, runtime=runtime, schema=schema, max_troubleshooting=-1)


def test_read_stats_tells_the_queue_of_each_domain_and_which_are_paused(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, sync_bus: SyncCommandBus, schema: str
) -> None:
    sync_bus.send("reports", "Build", uuid.uuid4(), {})
    sync_bus.send("mail", "Send", uuid.uuid4(), {})
    commandbus_sync.pause_domain(
        sync_pool, "reports", operator="alice", reason="db upgrade", runtime=runtime, schema=schema
    )

    stats = commandbus_sync.read_stats(sync_pool, runtime=runtime, schema=schema)

    assert {q.domain: (q.ready, q.paused) for q in stats.queue} == {
        "mail": (1, False),
        "reports": (1, True),
    }
    assert stats.commands["reports"]["PENDING"] == 1
    assert [(p.domain, p.reason) for p in stats.paused] == [("reports", "db upgrade")]
