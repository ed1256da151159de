"""Cancelling commands (pending, parked, running async and plain) and handler timeouts,
against a real server and a running worker."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from psycopg_pool import AsyncConnectionPool

import commandbus._engine.cancel_watcher
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
    running,
    wait_for_event,
    wait_for_status,
    wait_until,
)

REPLIES = "cancel-replies"


@pytest.fixture(autouse=True)
def quick_cancel_poll(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(commandbus._engine.cancel_watcher, "CANCEL_POLL_S", 0.05)
    yield


async def reply_of(pool: AsyncConnectionPool, schema: str) -> tuple[ReplyOutcome, str | None]:
    queue = ReplyQueue(pool, REPLIES, schema=schema)

    async def probe() -> list[object] | None:
        return await queue.read(1) or None

    (reply,) = await wait_until(probe, what="a reply")
    return reply.outcome, reply.error_message  # type: ignore[attr-defined]


async def test_a_pending_command_is_canceled_at_once_with_reply_and_audit(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Ship", command_id, {}, reply_to=REPLIES, delay=3600)
    status = await bus.cancel(DOMAIN, command_id, reason="order withdrawn", operator="ana")
    assert status == CommandStatus.CANCELED
    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and meta.status == CommandStatus.CANCELED
    assert await reply_of(pool, schema) == (ReplyOutcome.CANCELED, "order withdrawn")
    trail = await bus.get_audit_trail(command_id, domain=DOMAIN)
    cancel = [e for e in trail if e.event_type == "OPERATOR_CANCEL"]
    assert len(cancel) == 1
    assert cancel[0].details == {"operator": "ana", "reason": "order withdrawn"}
    # Finished: a second cancel is refused, and so is an unknown command.
    with pytest.raises(InvalidOperationError):
        await bus.cancel(DOMAIN, command_id, reason="again")
    with pytest.raises(CommandNotFoundError):
        await bus.cancel(DOMAIN, uuid.uuid4(), reason="nothing")


async def test_cancel_refuses_bad_input_and_changes_nothing(bus: CommandBus) -> None:
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Ship", command_id, {}, delay=3600)
    for kwargs in ({"reason": ""}, {"reason": "x\x00y"}, {"reason": "ok", "operator": "\ud800"}):
        with pytest.raises(ValidationError):
            await bus.cancel(DOMAIN, command_id, **kwargs)  # type: ignore[arg-type]
    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and meta.status == CommandStatus.PENDING


async def test_a_running_async_handler_is_cancelled_at_its_next_await(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    await execute(pool, schema, "CREATE TABLE {schema}.notes (note text)")
    registry = HandlerRegistry()
    started = asyncio.Event()
    finished_normally = []

    @registry.handler(DOMAIN, "Slow")
    async def slow(command: Command, ctx: HandlerContext) -> None:
        await ctx.conn.execute(f'INSERT INTO "{schema}".notes VALUES (%s)', ("written",))
        started.set()
        await asyncio.sleep(60)
        finished_normally.append(command.command_id)

    command_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry)) as worker:
        await bus.send(DOMAIN, "Slow", command_id, {}, reply_to=REPLIES)
        await wait_for_event(started, what="the handler to start")
        status = await bus.cancel(DOMAIN, command_id, reason="stuck", operator="ops")
        assert status == CommandStatus.IN_PROGRESS
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.CANCELED)
    assert finished_normally == []
    assert worker.stats["canceled"] == 1
    assert await reply_of(pool, schema) == (ReplyOutcome.CANCELED, "stuck")
    assert await execute(pool, schema, "SELECT * FROM {schema}.notes") == []  # rolled back
    assert "OPERATOR_CANCEL" in await event_types(bus, command_id)


async def test_a_running_plain_handler_sees_cancel_requested(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()
    started = threading.Event()

    @registry.handler(DOMAIN, "Loop")
    def loop(command: Command, ctx: HandlerContext) -> None:
        started.set()
        deadline = time.monotonic() + 30
        while not ctx.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)  # a step of the handler's own work

    command_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry)):
        await bus.send(DOMAIN, "Loop", command_id, {})
        await asyncio.to_thread(started.wait, 10)
        await bus.cancel(DOMAIN, command_id, reason="no longer needed")
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.CANCELED)
    assert meta.attempts == 1


async def test_a_cancel_request_that_finds_the_command_waiting_for_a_retry_applies_when_leased(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()
    calls = []

    @registry.handler(DOMAIN, "Flaky")
    async def flaky(command: Command, ctx: HandlerContext) -> None:
        calls.append(ctx.attempt)
        raise ConnectionError("down")

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Flaky", command_id, {}, max_attempts=5)
    # As if the request arrived while attempt 1 ran: it is IN_PROGRESS with a request.
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET cancel_requested = %s::jsonb WHERE command_id = %s",
        ('{"operator": "ops", "reason": "late"}', command_id),
    )
    async with running(make_worker(pool, schema, registry)):
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.CANCELED)
    assert calls == []  # never ran: canceled when leased


async def test_an_async_handler_over_its_timeout_is_a_transient_failure(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Slow", timeout=0.2)
    async def slow(command: Command, ctx: HandlerContext) -> None:
        if ctx.attempt == 1:
            await asyncio.sleep(60)

    command_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry)) as worker:
        await bus.send(DOMAIN, "Slow", command_id, {})
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.attempts == 2 and worker.stats["retried"] == 1
    (row,) = await execute(
        pool,
        schema,
        "SELECT last_error_type, last_error_code FROM {schema}.commands WHERE command_id = %s",
        (command_id,),
    )
    assert row == ("HandlerTimeoutError", "HANDLER_TIMEOUT")


async def test_a_plain_handler_over_the_workers_timeout_is_retried_and_left_to_finish(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    await execute(pool, schema, "CREATE TABLE {schema}.notes (attempt int)")
    registry = HandlerRegistry()
    release = threading.Event()
    saw_cancel = []

    @registry.handler(DOMAIN, "Stuck")
    def stuck(command: Command, ctx: HandlerContext) -> None:
        ctx.sync_conn.execute(f'INSERT INTO "{schema}".notes VALUES (%s)', (ctx.attempt,))
        if ctx.attempt == 1:
            release.wait(30)  # hung, past its timeout
            saw_cancel.append(ctx.cancel_requested)

    command_id = uuid.uuid4()
    worker = make_worker(pool, schema, registry, handler_timeout=0.3)
    async with running(worker):  # stopping must not wait for the hung thread
        await bus.send(DOMAIN, "Stuck", command_id, {}, max_attempts=2)
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.attempts == 2 and worker.stats["retried"] == 1  # a transient failure
    release.set()  # the abandoned thread ends; its write is not committed
    await wait_until(lambda: asyncio.sleep(0, saw_cancel), what="the thread to end")
    assert saw_cancel == [True]
    assert await execute(pool, schema, "SELECT attempt FROM {schema}.notes") == [(2,)]


async def test_a_cancel_that_loses_to_a_failure_does_not_cancel_the_operators_retry(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The failure comes first.
    monkeypatch.setattr(commandbus._engine.cancel_watcher, "CANCEL_POLL_S", 60)
    registry = HandlerRegistry()
    started, release = asyncio.Event(), asyncio.Event()
    runs = []

    @registry.handler(DOMAIN, "Charge")
    async def charge(command: Command, ctx: HandlerContext) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            started.set()
            await release.wait()
            raise PermanentCommandError("CARD_BLOCKED", "blocked")

    command_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry)):
        await bus.send(DOMAIN, "Charge", command_id, {})
        await wait_for_event(started, what="attempt 1")
        assert await bus.cancel(DOMAIN, command_id, reason="dup") == CommandStatus.IN_PROGRESS
        release.set()
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
        await TroubleshootingQueue(pool, schema=schema).operator_retry(
            DOMAIN, command_id, operator="ana"
        )
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert runs == [1, 1]  # the operator's retry ran (a fresh budget), it was not canceled
    assert meta.attempts == 1


async def test_a_cancel_during_a_timeouts_cleanup_leaves_the_watcher_working(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()
    cleaning, other_started = asyncio.Event(), asyncio.Event()

    @registry.handler(DOMAIN, "Slow", timeout=0.2)
    async def slow(command: Command, ctx: HandlerContext) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cleaning.set()
            await asyncio.shield(asyncio.sleep(0.5))  # cleanup that outlives the timeout
            raise

    @registry.handler(DOMAIN, "Long")
    async def long(command: Command, ctx: HandlerContext) -> None:
        other_started.set()
        await asyncio.sleep(60)

    slow_id, long_id = uuid.uuid4(), uuid.uuid4()
    async with running(make_worker(pool, schema, registry)):
        await bus.send(DOMAIN, "Slow", slow_id, {}, max_attempts=1)
        await bus.send(DOMAIN, "Long", long_id, {})
        await wait_for_event(cleaning, what="the timed-out handler's cleanup")
        await bus.cancel(DOMAIN, slow_id, reason="late")  # its deadline is expiring already
        await wait_for_event(other_started, what="the other handler")
        # The operator's cancel wins over the timeout it arrived during.
        await wait_for_status(bus, DOMAIN, slow_id, CommandStatus.CANCELED)
        await bus.cancel(DOMAIN, long_id, reason="still works")
        await wait_for_status(bus, DOMAIN, long_id, CommandStatus.CANCELED)


def test_timeouts_are_validated() -> None:
    registry = HandlerRegistry()
    for bad in (0, -1, float("nan"), "5"):
        with pytest.raises(ValidationError):
            registry.register(DOMAIN, "X", lambda c, x: None, timeout=bad)  # type: ignore[arg-type]
    assert registry.get(DOMAIN, "X") is None


async def test_commands_cancel_on_the_cli(database_url: str, schema: str, bus: CommandBus) -> None:
    from core.test_cli import db, run_cli

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Ship", command_id, {}, delay=3600)
    args = db(database_url, schema, "commands", "cancel", DOMAIN, str(command_id))
    done = await run_cli(*args, "--reason", "duplicate order", "--operator", "eve", "--json")
    assert done.json()["status"] == "CANCELED"
    trail = await bus.get_audit_trail(command_id, domain=DOMAIN)
    assert trail[-1].event_type == "OPERATOR_CANCEL"
    assert trail[-1].details == {"operator": "eve", "reason": "duplicate order"}
    again = await run_cli(*args, "--reason", "again")
    assert "cannot be canceled" in again.one_line_error(2)
