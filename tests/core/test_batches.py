"""Batches: many commands tracked as one group, counters counted from the commands.

Counters stay right under concurrent completion and after operator actions (a retried
command moves back, a cancel counts as canceled); the troubleshooting queue keeps a batch
open; on_complete runs once, and a batch outlives the process that created it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BatchCommand,
    BatchInfo,
    BatchNotFoundError,
    BatchStatus,
    BusinessRuleError,
    Command,
    CommandBus,
    CommandStatus,
    DuplicateCommandError,
    HandlerContext,
    HandlerRegistry,
    PermanentCommandError,
    SendRequest,
    TroubleshootingQueue,
    ValidationError,
)
from core.helpers import DOMAIN, execute, make_worker, running, wait_until

pytestmark = pytest.mark.anyio  # the conftest marks async tests too late for parametrize


def _commands(n: int, command_type: str = "Work") -> list[BatchCommand]:
    return [BatchCommand(command_type, uuid.uuid4(), {"i": i}) for i in range(n)]


def _counters(info: BatchInfo) -> dict[str, int]:
    return {
        "pending": info.pending,
        "in_progress": info.in_progress,
        "completed": info.completed,
        "failed": info.failed,
        "canceled": info.canceled,
        "in_troubleshooting": info.in_troubleshooting,
    }


async def _true_counts(
    pool: AsyncConnectionPool, schema: str, batch_id: uuid.UUID
) -> dict[str, int]:
    rows = await execute(
        pool,
        schema,
        "SELECT status, count(*) FROM {schema}.commands WHERE batch_id = %s GROUP BY 1",
        [batch_id],
    )
    key = {"IN_TROUBLESHOOTING_QUEUE": "in_troubleshooting"}
    counts = dict.fromkeys(
        ("pending", "in_progress", "completed", "failed", "canceled", "in_troubleshooting"), 0
    )
    for status, n in rows:
        counts[key.get(status, status.lower())] = n
    return counts


async def test_create_and_read_a_batch(bus: CommandBus) -> None:
    commands = _commands(3)
    result = await bus.create_batch(
        DOMAIN, commands, name="nightly import", custom_data={"source": "s3://bucket/f.csv"}
    )
    assert result.domain == DOMAIN and result.total == 3
    assert [r.command_id for r in result.results] == [c.command_id for c in commands]

    info = await bus.get_batch(DOMAIN, result.batch_id)
    assert info is not None
    assert (info.name, info.custom_data, info.total) == (
        "nightly import",
        {"source": "s3://bucket/f.csv"},
        3,
    )
    assert info.status == BatchStatus.PENDING and not info.is_terminal
    assert _counters(info) == {
        "pending": 3,
        "in_progress": 0,
        "completed": 0,
        "failed": 0,
        "canceled": 0,
        "in_troubleshooting": 0,
    }
    assert info.completed_at is None

    listed = await bus.list_batch_commands(DOMAIN, result.batch_id)
    assert {c.command_id for c in listed} == {c.command_id for c in commands}
    assert all(c.batch_id == result.batch_id and c.domain == DOMAIN for c in listed)
    page = await bus.list_batch_commands(DOMAIN, result.batch_id, limit=2, offset=2)
    assert len(page) == 1
    assert await bus.list_batch_commands(DOMAIN, result.batch_id, status="COMPLETED") == []
    assert await bus.get_batch("other-domain", result.batch_id) is None
    assert await bus.get_batch(DOMAIN, uuid.uuid4()) is None


async def test_send_requests_with_delay_and_options_are_accepted(bus: CommandBus) -> None:
    cid = uuid.uuid4()
    result = await bus.create_batch(
        DOMAIN,
        [SendRequest(DOMAIN, "Later", cid, {"x": 1}, reply_to="r", max_attempts=7, delay=3600)],
    )
    command = await bus.get_command(DOMAIN, cid)
    assert command is not None
    assert (command.batch_id, command.reply_to, command.max_attempts) == (result.batch_id, "r", 7)


async def test_counters_under_concurrency_and_operator_actions(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    """300 commands by 10 concurrent handlers: 10 fail by rule, 3 end in troubleshooting."""
    commands = _commands(300)
    rejected = {c.command_id for c in commands[:10]}
    broken = {c.command_id for c in commands[10:13]}
    registry = HandlerRegistry()

    async def work(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        if command.command_id in rejected:
            raise BusinessRuleError("REJECTED", "not allowed")
        if command.command_id in broken:
            raise PermanentCommandError("BROKEN", "needs a human")
        await asyncio.sleep(0)
        return {"i": command.data["i"]}

    registry.register(DOMAIN, "Work", work)
    batch = await bus.create_batch(DOMAIN, commands)
    tsq = TroubleshootingQueue(pool, schema=schema)
    async with running(make_worker(pool, schema, registry, concurrency=10)):

        async def settled() -> BatchInfo | None:
            info = await bus.get_batch(DOMAIN, batch.batch_id)
            assert info is not None
            return info if info.pending + info.in_progress == 0 else None

        info = await wait_until(settled, timeout=30, what="every command handled once")
        # The troubleshooting queue keeps the batch open.
        assert info.status == BatchStatus.IN_PROGRESS and info.completed_at is None
        assert _counters(info) == {
            "pending": 0,
            "in_progress": 0,
            "completed": 287,
            "failed": 10,
            "canceled": 0,
            "in_troubleshooting": 3,
        }
        assert _counters(info) == await _true_counts(pool, schema, batch.batch_id)
        listed = await bus.list_batches(DOMAIN, status=BatchStatus.IN_PROGRESS)
        assert [b.batch_id for b in listed] == [batch.batch_id]

        retried, canceled, completed = sorted(broken)
        broken.discard(retried)  # fixed: its handler succeeds now
        await tsq.operator_retry(DOMAIN, retried, operator="ops")
        moved = await bus.get_batch(DOMAIN, batch.batch_id)
        assert moved is not None
        assert moved.in_troubleshooting == 2  # the retried command moved back out...
        assert moved.pending + moved.in_progress + moved.completed == 288  # ...into the work
        await tsq.operator_cancel(DOMAIN, canceled, reason="not needed", operator="ops")
        await tsq.operator_complete(DOMAIN, completed, result={"manual": True}, operator="ops")

        async def terminal() -> BatchInfo | None:
            info = await bus.get_batch(DOMAIN, batch.batch_id)
            return info if info is not None and info.is_terminal else None

        info = await wait_until(terminal, what="the batch to finish")

    assert info.status == BatchStatus.COMPLETED_WITH_FAILURES
    assert _counters(info) == {
        "pending": 0,
        "in_progress": 0,
        "completed": 289,
        "failed": 10,
        "canceled": 1,
        "in_troubleshooting": 0,
    }
    assert _counters(info) == await _true_counts(pool, schema, batch.batch_id)
    assert info.completed_at is not None and info.completed_at >= info.created_at
    failed = await bus.list_batch_commands(DOMAIN, batch.batch_id, status=CommandStatus.FAILED)
    assert {c.command_id for c in failed} == rejected


async def test_many_workers_completing_one_batch_count_every_command(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()

    async def noop(command: Command, ctx: HandlerContext) -> None:
        return None

    registry.register(DOMAIN, "Work", noop)
    batch = await bus.create_batch(DOMAIN, _commands(1000))
    seen: list[BatchInfo] = []
    async with (
        running(make_worker(pool, schema, registry, concurrency=8)),
        running(make_worker(pool, schema, registry, concurrency=8)),
    ):

        async def done() -> BatchInfo | None:
            info = await bus.get_batch(DOMAIN, batch.batch_id)
            assert info is not None
            seen.append(info)
            return info if info.is_terminal else None

        info = await wait_until(done, timeout=30, what="the batch to complete")
    assert info.status == BatchStatus.COMPLETED and info.completed == 1000
    for snapshot in seen:  # every read along the way added up
        assert sum(_counters(snapshot).values()) == 1000
    completed = [s.completed for s in seen]
    assert completed == sorted(completed)


async def test_on_complete_runs_once_with_the_terminal_batch(
    pool: AsyncConnectionPool, schema: str
) -> None:
    registry = HandlerRegistry()

    async def work(command: Command, ctx: HandlerContext) -> None:
        if command.data["i"] == 0:
            raise BusinessRuleError("NO", "rejected")

    registry.register(DOMAIN, "Work", work)
    calls: list[BatchInfo] = []
    fired = asyncio.Event()

    async def on_complete(info: BatchInfo) -> None:
        calls.append(info)
        fired.set()

    async with CommandBus(pool, schema=schema) as bus:
        batch = await bus.create_batch(DOMAIN, _commands(20), on_complete=on_complete)
        other = CommandBus(pool, schema=schema)  # another process watching the same batch
        other_calls: list[BatchInfo] = []

        async def other_on_complete(info: BatchInfo) -> None:
            other_calls.append(info)
            fired.set()  # either watcher may claim the batch first

        await other.watch_batch(DOMAIN, batch.batch_id, other_on_complete)
        async with running(make_worker(pool, schema, registry)):
            await asyncio.wait_for(fired.wait(), 15)
        # Both watchers saw the batch terminal and went idle: nothing is left to fire.
        await _watcher_idle(bus)
        await _watcher_idle(other)
        await other.close()
        # A late watcher never fires a claimed batch again.
        await bus.watch_batch(DOMAIN, batch.batch_id, on_complete)
        await _watcher_idle(bus)

    assert len(calls) + len(other_calls) == 1
    (info,) = calls or other_calls
    assert info.batch_id == batch.batch_id
    assert info.status == BatchStatus.COMPLETED_WITH_FAILURES
    assert (info.completed, info.failed) == (19, 1)
    stored = await execute(
        pool,
        schema,
        "SELECT completed_at FROM {schema}.batches WHERE batch_id = %s",
        [batch.batch_id],
    )
    assert stored == [(info.completed_at,)]


async def _watcher_idle(bus: CommandBus) -> None:
    """Wait until the bus's batch watcher has nothing left to watch and its task ended."""
    watcher = bus._batch_watcher
    assert watcher is not None

    async def idle() -> bool:
        return watcher.watching == 0 and (watcher._task is None or watcher._task.done())

    await wait_until(idle, what="the batch watcher to go idle")


async def test_a_batch_outlives_the_process_that_created_it(
    pool: AsyncConnectionPool, schema: str
) -> None:
    registry = HandlerRegistry()

    async def noop(command: Command, ctx: HandlerContext) -> None:
        return None

    registry.register(DOMAIN, "Work", noop)
    lost: list[BatchInfo] = []

    async def never(info: BatchInfo) -> None:
        lost.append(info)

    creator = CommandBus(pool, schema=schema)
    batch = await creator.create_batch(DOMAIN, _commands(5), on_complete=never)
    await creator.close()  # the creating process is gone; its callback with it

    async with running(make_worker(pool, schema, registry)):

        async def terminal() -> BatchInfo | None:
            info = await creator.get_batch(DOMAIN, batch.batch_id)
            return info if info is not None and info.is_terminal else None

        info = await wait_until(terminal, what="the batch to complete")
    assert info.status == BatchStatus.COMPLETED and lost == []

    # A restarted process re-attaches: the terminal, unclaimed batch fires at once.
    fired: list[BatchInfo] = []
    done = asyncio.Event()

    async def on_complete(info: BatchInfo) -> None:
        fired.append(info)
        done.set()

    async with CommandBus(pool, schema=schema) as restarted:
        await restarted.watch_batch(DOMAIN, batch.batch_id, on_complete)
        await asyncio.wait_for(done.wait(), 10)
    assert [i.batch_id for i in fired] == [batch.batch_id] and lost == []


async def test_list_batches_by_status_and_page(bus: CommandBus) -> None:
    first = await bus.create_batch(DOMAIN, _commands(1), name="a")
    second = await bus.create_batch(DOMAIN, _commands(2), name="b")
    await bus.create_batch("elsewhere", _commands(1), name="c")
    assert [b.name for b in await bus.list_batches(DOMAIN)] == ["b", "a"]
    assert [b.batch_id for b in await bus.list_batches(DOMAIN, limit=1, offset=1)] == [
        first.batch_id
    ]
    assert len(await bus.list_batches(DOMAIN, status="PENDING")) == 2
    assert await bus.list_batches(DOMAIN, status=BatchStatus.COMPLETED) == []
    assert second.total == 2


async def test_a_batch_joins_the_callers_transaction(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    async with pool.connection() as conn:
        async with conn.transaction(force_rollback=True):
            rolled_back = await bus.create_batch(DOMAIN, _commands(3), conn=conn)
        async with conn.transaction():
            committed = await bus.create_batch(DOMAIN, _commands(2), conn=conn)
    assert await bus.get_batch(DOMAIN, rolled_back.batch_id) is None
    info = await bus.get_batch(DOMAIN, committed.batch_id)
    assert info is not None and info.total == 2
    rows = await execute(pool, schema, "SELECT count(*) FROM {schema}.commands")
    assert rows == [(2,)]


@pytest.mark.parametrize(
    ("commands", "kwargs", "field"),
    [
        ([], {}, "commands"),
        ("not a list", {}, "commands"),
        ([{"command_type": "Work"}], {}, r"commands\[0\]"),
        ([SendRequest("other", "Work", uuid.uuid4(), {})], {}, r"commands\[0\].domain"),
        ([BatchCommand("bad type", uuid.uuid4(), {})], {}, "command_type"),
        ([BatchCommand("Work", "1234", {})], {}, "command_id"),  # type: ignore[arg-type]
        ([BatchCommand("Work", uuid.uuid4(), [])], {}, "data"),  # type: ignore[arg-type]
        ([BatchCommand("Work", uuid.uuid4(), {})], {"name": ""}, "name"),
        ([BatchCommand("Work", uuid.uuid4(), {})], {"name": "x" * 300}, "name"),
        ([BatchCommand("Work", uuid.uuid4(), {})], {"custom_data": [1]}, "custom_data"),
        ([BatchCommand("Work", uuid.uuid4(), {}, max_attempts=0)], {}, "max_attempts"),
    ],
)
async def test_bad_batches_are_rejected_before_anything_is_written(
    pool: AsyncConnectionPool,
    schema: str,
    bus: CommandBus,
    commands: Any,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    with pytest.raises(ValidationError, match=rf"^{field}"):
        await bus.create_batch(DOMAIN, commands, **kwargs)
    with pytest.raises(ValidationError, match=r"^domain"):
        await bus.create_batch("no spaces", _commands(1))
    rows = await execute(
        pool,
        schema,
        "SELECT (SELECT count(*) FROM {schema}.batches), (SELECT count(*) FROM {schema}.commands)",
    )
    assert rows == [(0, 0)]


async def test_a_duplicate_command_rejects_the_whole_batch(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    taken = uuid.uuid4()
    await bus.send(DOMAIN, "Work", taken, {})
    with pytest.raises(DuplicateCommandError) as caught:
        await bus.create_batch(DOMAIN, [*_commands(3), BatchCommand("Work", taken, {})])
    assert caught.value.command_ids == [taken]
    rows = await execute(
        pool,
        schema,
        "SELECT (SELECT count(*) FROM {schema}.batches), (SELECT count(*) FROM {schema}.commands)",
    )
    assert rows == [(0, 1)]


async def test_unknown_batches_and_bad_reads(bus: CommandBus) -> None:
    missing = uuid.uuid4()
    with pytest.raises(BatchNotFoundError, match=str(missing)):
        await bus.list_batch_commands(DOMAIN, missing)
    with pytest.raises(BatchNotFoundError):
        await bus.watch_batch(DOMAIN, missing, _noop_callback)
    with pytest.raises(ValidationError, match=r"^status"):
        await bus.list_batches(DOMAIN, status="DONE")
    with pytest.raises(ValidationError, match=r"^status"):
        await bus.list_batch_commands(DOMAIN, missing, status="DONE")
    with pytest.raises(ValidationError, match=r"^batch_id"):
        await bus.get_batch(DOMAIN, "nope")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"^limit"):
        await bus.list_batches(DOMAIN, limit=0)


async def _noop_callback(info: BatchInfo) -> None:
    return None


async def test_a_batch_whose_commands_were_pruned_is_claimed_once(
    pool: AsyncConnectionPool, schema: str
) -> None:
    """Pruned commands leave no completion time to stamp; the claim must still stick, or
    every later watcher would run the callbacks again."""
    calls: list[BatchInfo] = []

    async def on_complete(info: BatchInfo) -> None:
        calls.append(info)

    async with CommandBus(pool, schema=schema) as bus:
        batch = await bus.create_batch(DOMAIN, _commands(2))
        await execute(
            pool,
            schema,
            "DELETE FROM {schema}.commands WHERE batch_id = %s",
            [batch.batch_id],
        )
        for _ in range(2):
            await bus.watch_batch(DOMAIN, batch.batch_id, on_complete)
            await _watcher_idle(bus)

    assert len(calls) == 1


async def test_closing_the_bus_during_a_callback_leaves_other_batches_claimable(
    pool: AsyncConnectionPool, schema: str
) -> None:
    """A graceful shutdown mid-callback must not lose the callbacks of batches that
    finished at the same time: another watcher (a restarted process) still runs them."""
    registry = HandlerRegistry()

    async def work(command: Command, ctx: HandlerContext) -> None:
        return None

    registry.register(DOMAIN, "Work", work)
    started: list[uuid.UUID] = []
    first_started = asyncio.Event()

    async def slow(info: BatchInfo) -> None:
        started.append(info.batch_id)
        first_started.set()
        await asyncio.sleep(30)  # still running when the bus closes

    bus = CommandBus(pool, schema=schema)
    batches = [(await bus.create_batch(DOMAIN, _commands(2))).batch_id for _ in range(2)]
    async with running(make_worker(pool, schema, registry)):
        for batch_id in batches:  # both terminal before the watcher looks
            await wait_until(
                lambda b=batch_id: _is_terminal(bus, b), what=f"batch {batch_id} to finish"
            )
    watcher = bus._watcher()  # both watched before its first poll sees them terminal
    for batch_id in batches:
        watcher.watch(batch_id, slow)
    await asyncio.wait_for(first_started.wait(), 10)
    await bus.close()

    (interrupted,) = started
    (not_reached,) = [b for b in batches if b != interrupted]
    fired = asyncio.Event()

    async def later(info: BatchInfo) -> None:
        fired.set()

    async with CommandBus(pool, schema=schema) as restarted:
        await restarted.watch_batch(DOMAIN, not_reached, later)
        await asyncio.wait_for(fired.wait(), 10)


async def _is_terminal(bus: CommandBus, batch_id: uuid.UUID) -> bool:
    info = await bus.get_batch(DOMAIN, batch_id)
    return info is not None and info.is_terminal


async def test_a_watcher_whose_pool_was_closed_stops_instead_of_retrying_forever(
    database_url: str, pool: AsyncConnectionPool, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    # `pool` migrated the schema; the bus gets a pool of its own, closed under it.
    own_pool = AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False)
    await own_pool.open()
    bus = CommandBus(own_pool, schema=schema)

    async def never(info: BatchInfo) -> None:
        raise AssertionError("the batch never finishes")

    with caplog.at_level("ERROR", logger="commandbus.batches"):
        await bus.create_batch(DOMAIN, _commands(1), on_complete=never)
        await own_pool.close()  # without bus.close() first
        await _watcher_idle(bus)

    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "pool was closed" in errors[0].getMessage()
