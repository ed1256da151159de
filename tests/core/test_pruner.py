"""Retention: the pruner deletes finished work older than its age, chunk by chunk, and
nothing else: not the troubleshooting queue, not pending or running commands, not what
belongs to a batch or a process that has not finished. One pruner leads at a time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BatchCommand,
    CommandBus,
    HandlerRegistry,
    Pruner,
    Retention,
    ValidationError,
)
from core.helpers import DOMAIN, execute, make_worker, running, wait_until

pytestmark = pytest.mark.anyio

WEEK = Retention(older_than=timedelta(days=7), chunk_size=1000)


async def _send(bus: CommandBus, n: int = 1, **kwargs: Any) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    for command_id in ids:
        await bus.send(DOMAIN, "Work", command_id, {}, **kwargs)
    return ids


async def _age(
    pool: AsyncConnectionPool, schema: str, ids: list[uuid.UUID], status: str, days: float
) -> None:
    """Set commands to ``status``, last changed ``days`` ago, with an audit row and a
    reply each (what a pruned command takes with it)."""
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET status = %s, created_at = now() - make_interval("
        "secs => %s), updated_at = now() - make_interval(secs => %s) "
        "WHERE command_id = ANY(%s)",
        [status, days * 86400 + 60, days * 86400, ids],
    )
    for command_id in ids:
        await execute(
            pool,
            schema,
            "INSERT INTO {schema}.audit (domain, command_id, event_type) VALUES (%s, %s, 'X')",
            [DOMAIN, command_id],
        )
        await execute(
            pool,
            schema,
            "INSERT INTO {schema}.replies (queue, domain, command_id, command_type, outcome) "
            "VALUES ('replies', %s, %s, 'Work', 'SUCCESS')",
            [DOMAIN, command_id],
        )


async def _left(pool: AsyncConnectionPool, schema: str, ids: list[uuid.UUID]) -> dict[str, int]:
    counts = {}
    for table in ("commands", "audit", "replies"):
        rows = await execute(
            pool,
            schema,
            f"SELECT count(*) FROM {{schema}}.{table} WHERE command_id = ANY(%s)",
            [ids],
        )
        counts[table] = rows[0][0]
    return counts


async def test_deletes_old_finished_commands_with_their_audit_and_replies(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    old = {s: await _send(bus, 2) for s in ("COMPLETED", "FAILED", "CANCELED")}
    for status, ids in old.items():
        await _age(pool, schema, ids, status, 8)
    recent = await _send(bus, 2)
    await _age(pool, schema, recent, "COMPLETED", 6)
    result = await Pruner(pool, WEEK, schema=schema).prune()
    assert result is not None
    assert (result.commands, result.batches, result.processes) == (6, 0, 0)
    gone = [i for ids in old.values() for i in ids]
    assert await _left(pool, schema, gone) == {"commands": 0, "audit": 0, "replies": 0}
    assert await _left(pool, schema, recent) == {"commands": 2, "audit": 2, "replies": 2}


async def test_never_deletes_unfinished_or_troubleshooting_commands(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    kept = {s: await _send(bus) for s in ("PENDING", "IN_PROGRESS", "IN_TROUBLESHOOTING_QUEUE")}
    for status, ids in kept.items():
        await _age(pool, schema, ids, status, 30)
    result = await Pruner(pool, WEEK, schema=schema).prune()
    assert result is not None and result.commands == 0
    all_ids = [i for ids in kept.values() for i in ids]
    assert await _left(pool, schema, all_ids) == {"commands": 3, "audit": 3, "replies": 3}


async def test_deletes_in_chunks_of_chunk_size(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    ids = await _send(bus, 10)
    await _age(pool, schema, ids, "COMPLETED", 8)
    pruner = Pruner(pool, Retention(chunk_size=3), schema=schema)
    result = await pruner.prune()
    assert result is not None and result.commands == 10
    assert (await _left(pool, schema, ids))["commands"] == 0
    assert pruner.stats["commands"] == 10
    assert pruner.stats["rounds"] == 1 and pruner.stats["busy_ms"] >= 0


async def test_dry_run_counts_without_deleting(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    ids = await _send(bus, 4)
    await _age(pool, schema, ids, "COMPLETED", 8)
    pruner = Pruner(pool, WEEK, schema=schema)
    counted = await pruner.prune(dry_run=True)
    assert counted is not None and counted.commands == 4
    assert (await _left(pool, schema, ids))["commands"] == 4
    done = await pruner.prune()
    assert done is not None and done.commands == 4


async def _batch(bus: CommandBus, n: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    commands = [BatchCommand("Work", uuid.uuid4(), {}) for _ in range(n)]
    result = await bus.create_batch(DOMAIN, commands)
    return result.batch_id, [c.command_id for c in commands]


async def _age_batch(pool: AsyncConnectionPool, schema: str, batch_id: uuid.UUID) -> None:
    await execute(
        pool,
        schema,
        "UPDATE {schema}.batches SET created_at = now() - interval '9 days' WHERE batch_id = %s",
        [batch_id],
    )


async def test_a_finished_batch_goes_whole_and_an_open_one_stays(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    done_id, done = await _batch(bus, 7)  # more than a chunk: deleted over statements
    await _age(pool, schema, done, "COMPLETED", 8)
    await _age_batch(pool, schema, done_id)
    open_id, open_ids = await _batch(bus, 3)
    await _age(pool, schema, open_ids[:2], "COMPLETED", 8)
    await _age(pool, schema, open_ids[2:], "IN_TROUBLESHOOTING_QUEUE", 8)
    await _age_batch(pool, schema, open_id)
    recent_id, recent = await _batch(bus, 2)
    await _age(pool, schema, recent[:1], "COMPLETED", 8)
    await _age(pool, schema, recent[1:], "FAILED", 1)  # the batch finished a day ago
    await _age_batch(pool, schema, recent_id)

    result = await Pruner(pool, Retention(chunk_size=3), schema=schema).prune()
    assert result is not None
    assert (result.commands, result.batches) == (7, 1)
    assert await bus.get_batch(DOMAIN, done_id) is None
    assert await _left(pool, schema, done) == {"commands": 0, "audit": 0, "replies": 0}
    open_batch = await bus.get_batch(DOMAIN, open_id)
    assert open_batch is not None and open_batch.completed == 2
    assert (await _left(pool, schema, open_ids))["commands"] == 3
    assert await bus.get_batch(DOMAIN, recent_id) is not None
    assert (await _left(pool, schema, recent))["commands"] == 2


async def _process(
    pool: AsyncConnectionPool, schema: str, status: str, ended_days_ago: float | None
) -> uuid.UUID:
    process_id = uuid.uuid4()
    await execute(
        pool,
        schema,
        "INSERT INTO {schema}.processes (process_id, domain, process_type, status, state, "
        "completed_at) VALUES (%s, 'sagas', 'Saga', %s, '{{}}', "
        "now() - make_interval(secs => %s))",
        [process_id, status, None if ended_days_ago is None else ended_days_ago * 86400],
    )
    await execute(
        pool,
        schema,
        "INSERT INTO {schema}.process_audit (process_id, entry_type) VALUES (%s, 'STEP')",
        [process_id],
    )
    return process_id


async def test_a_finished_process_goes_with_its_commands_and_a_running_one_stays(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    ended = await _process(pool, schema, "COMPLETED", 8)
    ended_cmds = await _send(bus, 2, correlation_id=ended)
    await _age(pool, schema, ended_cmds, "COMPLETED", 9)
    waiting = await _process(pool, schema, "WAITING_FOR_REPLY", None)
    waiting_cmds = await _send(bus, 2, correlation_id=waiting)
    await _age(pool, schema, waiting_cmds, "COMPLETED", 9)
    recent = await _process(pool, schema, "COMPENSATED", 2)
    recent_cmds = await _send(bus, 1, correlation_id=recent)
    await _age(pool, schema, recent_cmds, "FAILED", 9)

    result = await Pruner(pool, WEEK, schema=schema).prune()
    assert result is not None
    assert (result.commands, result.processes) == (2, 1)
    rows = await execute(pool, schema, "SELECT process_id FROM {schema}.processes")
    assert {r[0] for r in rows} == {waiting, recent}
    rows = await execute(pool, schema, "SELECT DISTINCT process_id FROM {schema}.process_audit")
    assert {r[0] for r in rows} == {waiting, recent}
    assert (await _left(pool, schema, ended_cmds))["commands"] == 0
    assert (await _left(pool, schema, waiting_cmds + recent_cmds))["commands"] == 3


async def test_one_pruner_leads_at_a_time(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    ids = await _send(bus, 2)
    await _age(pool, schema, ids, "COMPLETED", 8)
    async with pool.connection() as holder:
        await holder.execute(
            "SELECT pg_advisory_lock(hashtext(%s))", [f"commandbus.prune:{schema}"]
        )
        assert await Pruner(pool, WEEK, schema=schema).prune() is None
        assert (await _left(pool, schema, ids))["commands"] == 2
        await holder.execute(
            "SELECT pg_advisory_unlock(hashtext(%s))", [f"commandbus.prune:{schema}"]
        )
    # Two at once: each old command is deleted once, by whichever leads.
    results = await asyncio.gather(*(Pruner(pool, WEEK, schema=schema).prune() for _ in range(4)))
    assert sum(r.commands for r in results if r is not None) == 2


async def test_a_worker_prunes_by_default_and_not_with_retention_none(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Work")
    async def work(command: Any, ctx: Any) -> None:
        return None

    assert make_worker(pool, schema, registry, retention=None).pruner is None
    assert make_worker(pool, schema, registry).pruner is not None  # on by default
    ids = await _send(bus, 3)
    await _age(pool, schema, ids, "COMPLETED", 8)
    fresh = await _send(bus, 2)
    worker = make_worker(pool, schema, registry, retention=Retention(interval=0.05))
    async with running(worker):

        async def pruned() -> bool:
            return (await _left(pool, schema, ids))["commands"] == 0

        await wait_until(pruned, what="the worker's pruner to delete old commands")
    assert (await _left(pool, schema, fresh))["commands"] == 2  # ran, recent: kept


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"older_than": timedelta(0)}, "older_than"),
        ({"older_than": -5}, "older_than"),
        ({"older_than": "7d"}, "older_than"),
        ({"interval": 0}, "interval"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_retention_settings_name_the_argument(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Retention(**settings)
    assert caught.value.field == field


async def test_a_round_failing_as_it_is_cancelled_still_ends_the_service(
    pool: AsyncConnectionPool, schema: str
) -> None:
    """A worker's shutdown cancels its pruner: a driver error raised by the cancelled
    statement's clean-up must not be taken for a failed round and retried forever."""
    started = asyncio.Event()

    class Stuck(Pruner):
        async def _round(self) -> float:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise RuntimeError("rollback on a cancelled query failed") from None
            return 1.0

    pruner = Stuck(pool, Retention(interval=0.01), schema=schema)
    task = asyncio.create_task(pruner.run())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert not pruner.running
