"""The troubleshooting queue: what operators see, and what retry, cancel and complete do.

Each action locks the command row: two operators acting at once cannot both succeed.
Every action is audited with the operator's name.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandNotFoundError,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    InvalidOperationError,
    PermanentCommandError,
    ReplyOutcome,
    ReplyQueue,
    TroubleshootingQueue,
    ValidationError,
)
from core.helpers import (
    DOMAIN,
    event_types,
    execute,
    make_worker,
    queue_messages,
    running,
    wait_for_status,
    wait_until,
)

REPLIES = "ops-replies"


class Parker:
    """Sends commands whose handler fails permanently, so they land in the queue."""

    def __init__(self, pool: AsyncConnectionPool, bus: CommandBus, schema: str) -> None:
        self.pool, self.bus, self.schema = pool, bus, schema
        self.fixed: set[uuid.UUID] = set()  # commands whose handler succeeds from now on

    def registry(self, domains: Sequence[str]) -> HandlerRegistry:
        registry = HandlerRegistry()

        async def handle(command: Command, ctx: HandlerContext) -> dict[str, Any]:
            if command.command_id not in self.fixed:
                raise PermanentCommandError("BROKEN", f"cannot handle {command.data}")
            return {"fixed": True, "attempt": ctx.attempt}

        for domain in domains:
            for command_type in ("Pay", "Ship"):
                registry.register(domain, command_type, handle)
        return registry

    async def park(self, domain: str = DOMAIN, command_type: str = "Pay", **send: Any) -> uuid.UUID:
        command_id = uuid.uuid4()
        await self.bus.send(domain, command_type, command_id, {"n": 1}, **send)
        async with running(
            make_worker(self.pool, self.schema, self.registry([domain]), domain=domain)
        ):
            await wait_for_status(
                self.bus, domain, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE
            )
        return command_id


@pytest.fixture
def parker(pool: AsyncConnectionPool, bus: CommandBus, schema: str) -> Parker:
    return Parker(pool, bus, schema)


@pytest.fixture
def tsq(pool: AsyncConnectionPool, schema: str) -> TroubleshootingQueue:
    return TroubleshootingQueue(pool, schema=schema)


# -- what operators see -----------------------------------------------------------------


async def test_an_item_carries_the_command_and_its_last_error(
    parker: Parker, tsq: TroubleshootingQueue
) -> None:
    correlation_id = uuid.uuid4()
    command_id = await parker.park(correlation_id=correlation_id, reply_to=REPLIES, max_attempts=4)
    (item,) = await tsq.list_troubleshooting(DOMAIN)
    assert (item.domain, item.command_id, item.command_type) == (DOMAIN, command_id, "Pay")
    assert item.data == {"n": 1}
    assert (item.attempts, item.max_attempts) == (1, 4)
    assert (item.last_error_type, item.last_error_code) == ("PermanentCommandError", "BROKEN")
    assert item.last_error_message == "cannot handle {'n': 1}"
    assert item.last_error_traceback and "PermanentCommandError" in item.last_error_traceback
    assert (item.correlation_id, item.reply_to, item.batch_id) == (correlation_id, REPLIES, None)
    assert item.created_at <= item.updated_at


async def test_listing_filters_pages_and_counts_by_domain(
    parker: Parker, tsq: TroubleshootingQueue
) -> None:
    pays = [await parker.park(DOMAIN, "Pay") for _ in range(3)]
    ship = await parker.park(DOMAIN, "Ship")
    other = await parker.park("billing", "Pay")

    assert await tsq.count_troubleshooting() == 5
    assert await tsq.count_troubleshooting(DOMAIN) == 4
    assert await tsq.count_troubleshooting("billing") == 1
    assert await tsq.count_troubleshooting("nothing-here") == 0
    assert await tsq.list_domains() == ["billing", DOMAIN]

    listed = await tsq.list_troubleshooting(DOMAIN)
    assert [i.command_id for i in listed] == [ship, *reversed(pays)]  # latest parked first
    assert [i.command_id for i in await tsq.list_troubleshooting(DOMAIN, command_type="Ship")] == [
        ship
    ]
    page = await tsq.list_troubleshooting(DOMAIN, limit=2, offset=1)
    assert [i.command_id for i in page] == [i.command_id for i in listed[1:3]]

    everything = await tsq.list_all_troubleshooting()
    assert {i.command_id for i in everything} == {*pays, ship, other}
    assert len(await tsq.list_all_troubleshooting(limit=2)) == 2
    assert len(await tsq.list_all_troubleshooting(limit=2, offset=4)) == 1
    with pytest.raises(ValidationError):
        await tsq.list_troubleshooting(DOMAIN, limit=0)
    with pytest.raises(ValidationError):
        await tsq.list_all_troubleshooting(offset=-1)


async def test_an_empty_queue_lists_nothing(tsq: TroubleshootingQueue) -> None:
    assert await tsq.list_troubleshooting(DOMAIN) == []
    assert await tsq.list_all_troubleshooting() == []
    assert await tsq.list_domains() == []
    assert await tsq.count_troubleshooting() == 0


# -- operator actions -------------------------------------------------------------------


async def test_operator_retry_redelivers_with_a_fresh_attempt_budget(
    parker: Parker,
    tsq: TroubleshootingQueue,
    pool: AsyncConnectionPool,
    bus: CommandBus,
    schema: str,
) -> None:
    command_id = await parker.park(max_attempts=1, reply_to=REPLIES)
    await tsq.operator_retry(DOMAIN, command_id, operator="alice")

    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and (meta.status, meta.attempts) == (CommandStatus.PENDING, 0)
    assert await queue_messages(pool, schema, command_id) == 1
    assert await tsq.count_troubleshooting() == 0

    parker.fixed.add(command_id)
    async with running(make_worker(pool, schema, parker.registry([DOMAIN]))):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.attempts == 1 and meta.result == {"fixed": True, "attempt": 1}

    trail = await bus.get_audit_trail(command_id)
    assert [e.event_type for e in trail] == [
        "SENT",
        "RECEIVED",
        "MOVED_TO_TROUBLESHOOTING_QUEUE",
        "OPERATOR_RETRY",
        "RECEIVED",
        "COMPLETED",
    ]
    assert trail[3].details["operator"] == "alice"
    (reply,) = await ReplyQueue(pool, REPLIES, schema=schema).read()
    assert reply.outcome == ReplyOutcome.SUCCESS


async def test_operator_retry_wakes_an_idle_worker(
    parker: Parker,
    tsq: TroubleshootingQueue,
    pool: AsyncConnectionPool,
    bus: CommandBus,
    schema: str,
) -> None:
    command_id = await parker.park()
    parker.fixed.add(command_id)
    worker = make_worker(pool, schema, parker.registry([DOMAIN]), poll_interval=30)
    async with running(worker):
        await tsq.operator_retry(DOMAIN, command_id)
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED, timeout=5)


async def test_operator_cancel_ends_the_command_with_a_canceled_reply(
    parker: Parker,
    tsq: TroubleshootingQueue,
    pool: AsyncConnectionPool,
    bus: CommandBus,
    schema: str,
) -> None:
    correlation_id = uuid.uuid4()
    command_id = await parker.park(reply_to=REPLIES, correlation_id=correlation_id)
    await tsq.operator_cancel(DOMAIN, command_id, reason="customer withdrew", operator="bob")

    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and meta.status == CommandStatus.CANCELED
    assert await tsq.count_troubleshooting() == 0
    assert await queue_messages(pool, schema, command_id) == 0
    trail = await bus.get_audit_trail(command_id)
    assert trail[-1].event_type == "OPERATOR_CANCEL"
    assert trail[-1].details == {"operator": "bob", "reason": "customer withdrew"}

    (reply,) = await ReplyQueue(pool, REPLIES, schema=schema).read()
    assert reply.outcome == ReplyOutcome.CANCELED
    assert (reply.command_id, reply.correlation_id) == (command_id, correlation_id)
    assert reply.error_code == "CANCELED"
    assert reply.error_message == "customer withdrew"


async def test_operator_complete_ends_the_command_with_a_success_reply(
    parker: Parker,
    tsq: TroubleshootingQueue,
    pool: AsyncConnectionPool,
    bus: CommandBus,
    schema: str,
) -> None:
    command_id = await parker.park(reply_to=REPLIES)
    await tsq.operator_complete(DOMAIN, command_id, result={"manual": True}, operator="carol")

    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and meta.status == CommandStatus.COMPLETED
    assert meta.result == {"manual": True}
    trail = await bus.get_audit_trail(command_id)
    assert trail[-1].event_type == "OPERATOR_COMPLETE"
    assert trail[-1].details["operator"] == "carol"

    (reply,) = await ReplyQueue(pool, REPLIES, schema=schema).read()
    assert reply.outcome == ReplyOutcome.SUCCESS
    assert reply.result == {"manual": True}
    assert reply.error_code is None


async def test_operator_complete_without_result_or_reply_queue(
    parker: Parker,
    tsq: TroubleshootingQueue,
    pool: AsyncConnectionPool,
    bus: CommandBus,
    schema: str,
) -> None:
    command_id = await parker.park()
    await tsq.operator_complete(DOMAIN, command_id)
    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and meta.status == CommandStatus.COMPLETED and meta.result is None
    trail = await bus.get_audit_trail(command_id)
    assert trail[-1].event_type == "OPERATOR_COMPLETE"
    assert trail[-1].details["operator"] is None
    assert await execute(pool, schema, "SELECT count(*) FROM {schema}.replies") == [(0,)]


# -- invalid actions --------------------------------------------------------------------


@pytest.fixture
async def completed(pool: AsyncConnectionPool, bus: CommandBus, schema: str) -> uuid.UUID:
    registry = HandlerRegistry()

    async def ok(command: Command, ctx: HandlerContext) -> None:
        return None

    registry.register(DOMAIN, "Pay", ok)
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Pay", command_id, {})
    async with running(make_worker(pool, schema, registry)):
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    return command_id


async def test_actions_on_a_command_outside_the_queue_are_invalid(
    tsq: TroubleshootingQueue, bus: CommandBus, completed: uuid.UUID
) -> None:
    pending = uuid.uuid4()
    await bus.send(DOMAIN, "Pay", pending, {})
    for command_id in (completed, pending):
        with pytest.raises(InvalidOperationError, match="not in the troubleshooting queue"):
            await tsq.operator_retry(DOMAIN, command_id)
        with pytest.raises(InvalidOperationError):
            await tsq.operator_cancel(DOMAIN, command_id, reason="no")
        with pytest.raises(InvalidOperationError):
            await tsq.operator_complete(DOMAIN, command_id)
    meta = await bus.get_command(DOMAIN, completed)
    assert meta is not None and meta.status == CommandStatus.COMPLETED
    assert await event_types(bus, completed) == ["SENT", "RECEIVED", "COMPLETED"]


async def test_actions_on_an_unknown_command_raise_not_found(
    tsq: TroubleshootingQueue, parker: Parker
) -> None:
    parked = await parker.park()
    unknown = uuid.uuid4()
    with pytest.raises(CommandNotFoundError) as caught:
        await tsq.operator_retry(DOMAIN, unknown)
    assert (caught.value.domain, caught.value.command_id) == (DOMAIN, unknown)
    with pytest.raises(CommandNotFoundError):
        await tsq.operator_cancel(DOMAIN, unknown, reason="why not")
    with pytest.raises(CommandNotFoundError):
        await tsq.operator_complete(DOMAIN, unknown)
    with pytest.raises(CommandNotFoundError):  # right id, wrong domain
        await tsq.operator_retry("billing", parked)


@pytest.mark.parametrize("reason", ["", "   "])
@pytest.mark.anyio  # needed with parametrize: the conftest adds it too late for that
async def test_cancel_needs_a_reason(
    tsq: TroubleshootingQueue, parker: Parker, bus: CommandBus, reason: str
) -> None:
    command_id = await parker.park()
    with pytest.raises(ValidationError) as caught:
        await tsq.operator_cancel(DOMAIN, command_id, reason=reason)
    assert caught.value.field == "reason"
    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and meta.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE


async def test_bad_arguments_are_rejected_before_any_write(tsq: TroubleshootingQueue) -> None:
    with pytest.raises(ValidationError):
        await tsq.operator_retry(DOMAIN, "not-a-uuid")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await tsq.operator_complete(DOMAIN, uuid.uuid4(), result=[1])  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await tsq.operator_retry("bad domain", uuid.uuid4())


# -- concurrent operators ---------------------------------------------------------------


@pytest.fixture
async def row_lock(pool: AsyncConnectionPool, schema: str) -> AsyncIterator[Any]:
    """``hold(command_id)``: lock a command row until the block ends, to line operators up."""

    @asynccontextmanager
    async def hold(command_id: uuid.UUID) -> AsyncIterator[None]:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(
                f'SELECT 1 FROM "{schema}".commands WHERE command_id = %s FOR UPDATE',
                [command_id],
            )
            yield

    yield hold


async def _blocked_on_locks(pool: AsyncConnectionPool, schema: str, n: int) -> bool:
    """Whether ``n`` statements on this test's schema wait for a lock."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND position(%s IN query) > 0",
            [schema],
        )
        row = await cur.fetchone()
    return row is not None and row[0] >= n


async def test_two_concurrent_retries_exactly_one_succeeds(
    parker: Parker,
    tsq: TroubleshootingQueue,
    pool: AsyncConnectionPool,
    bus: CommandBus,
    schema: str,
    row_lock: Any,
) -> None:
    command_id = await parker.park()
    async with row_lock(command_id):
        # Both operators reach the row lock before either can act.
        attempts = [
            asyncio.create_task(tsq.operator_retry(DOMAIN, command_id, operator=name))
            for name in ("alice", "bob")
        ]
        await wait_until(lambda: _blocked_on_locks(pool, schema, 2), what="both operators to block")
    results = await asyncio.gather(*attempts, return_exceptions=True)

    assert sorted(type(r).__name__ for r in results) == ["InvalidOperationError", "NoneType"]
    assert await queue_messages(pool, schema, command_id) == 1
    trail = await bus.get_audit_trail(command_id)
    retries = [e for e in trail if e.event_type == "OPERATOR_RETRY"]
    assert len(retries) == 1
    winner = ["alice", "bob"][results.index(None)]
    assert retries[0].details["operator"] == winner


async def test_concurrent_retry_and_cancel_exactly_one_succeeds(
    parker: Parker,
    tsq: TroubleshootingQueue,
    pool: AsyncConnectionPool,
    bus: CommandBus,
    schema: str,
    row_lock: Any,
) -> None:
    command_id = await parker.park()
    async with row_lock(command_id):
        actions = [
            asyncio.create_task(tsq.operator_retry(DOMAIN, command_id)),
            asyncio.create_task(tsq.operator_cancel(DOMAIN, command_id, reason="dup")),
        ]
        await wait_until(lambda: _blocked_on_locks(pool, schema, 2), what="both operators to block")
    results = await asyncio.gather(*actions, return_exceptions=True)

    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, InvalidOperationError) for r in results) == 1
    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None
    expected = CommandStatus.PENDING if results[0] is None else CommandStatus.CANCELED
    assert meta.status == expected
