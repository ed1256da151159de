"""What happens to a command once a worker ran its handler: the four outcomes.

Success → COMPLETED + SUCCESS reply; BusinessRuleError → FAILED + FAILED reply, no retry;
PermanentCommandError, a missing handler or an unusable result → the troubleshooting queue.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BusinessRuleError,
    Command,
    CommandBus,
    CommandStatus,
    ConfigurationError,
    HandlerContext,
    HandlerRegistry,
    PermanentCommandError,
    ReplyOutcome,
    ReplyQueue,
    SendRequest,
    TroubleshootingQueue,
)
from core.helpers import DOMAIN, event_types, make_worker, queue_messages, running, wait_for_status

REPLIES = "orders-replies"


async def test_success_stores_result_replies_and_removes_the_message(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    seen: list[tuple[Command, int, int]] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "PlaceOrder")
    async def place(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        seen.append((command, ctx.attempt, ctx.max_attempts))
        return {"order": command.data["sku"], "total": 42}

    command_id, correlation_id = uuid.uuid4(), uuid.uuid4()
    await bus.send(
        DOMAIN,
        "PlaceOrder",
        command_id,
        {"sku": "A-1"},
        correlation_id=correlation_id,
        reply_to=REPLIES,
        max_attempts=5,
    )
    async with running(make_worker(pool, schema, registry)) as worker:
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    assert meta.result == {"order": "A-1", "total": 42}
    assert meta.attempts == 1
    ((command, attempt, max_attempts),) = seen
    assert (command.command_id, command.domain, command.command_type) == (
        command_id,
        DOMAIN,
        "PlaceOrder",
    )
    assert command.data == {"sku": "A-1"}
    assert command.correlation_id == correlation_id and command.reply_to == REPLIES
    assert (attempt, max_attempts) == (1, 5)
    assert await event_types(bus, command_id) == ["SENT", "RECEIVED", "COMPLETED"]
    assert await queue_messages(pool, schema, command_id) == 0
    assert worker.stats["completed"] == 1

    (reply,) = await ReplyQueue(pool, REPLIES, schema=schema).read()
    assert reply.outcome == ReplyOutcome.SUCCESS
    assert (reply.command_id, reply.command_type, reply.domain) == (
        command_id,
        "PlaceOrder",
        DOMAIN,
    )
    assert reply.correlation_id == correlation_id
    assert reply.result == {"order": "A-1", "total": 42}
    assert reply.error_code is None


async def test_success_without_reply_to_sends_no_reply(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()

    async def noop(command: Command, ctx: HandlerContext) -> None:
        return None

    registry.register(DOMAIN, "Noop", noop)
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Noop", command_id, {})
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.result is None
    async with pool.connection() as conn:
        cur = await conn.execute(f'SELECT count(*) FROM "{schema}".replies')
        assert await cur.fetchone() == (0,)


async def test_business_rule_error_fails_with_a_failed_reply_and_no_retry(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    calls = 0
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Withdraw")
    async def withdraw(command: Command, ctx: HandlerContext) -> None:
        nonlocal calls
        calls += 1
        raise BusinessRuleError(
            "INSUFFICIENT_FUNDS", "balance is 3, asked 10", {"balance": 3, "code": "spoofed"}
        )

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Withdraw", command_id, {"amount": 10}, reply_to=REPLIES)
    async with running(make_worker(pool, schema, registry)) as worker:
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.FAILED)

    assert calls == 1 and meta.attempts == 1
    assert meta.last_error_type == "BusinessRuleError"
    assert meta.last_error_code == "INSUFFICIENT_FUNDS"
    assert meta.last_error_message == "balance is 3, asked 10"
    assert await queue_messages(pool, schema, command_id) == 0
    assert await TroubleshootingQueue(pool, schema=schema).count_troubleshooting() == 0
    trail = await bus.get_audit_trail(command_id)
    assert [e.event_type for e in trail] == ["SENT", "RECEIVED", "FAILED"]
    # The error's details are audited; they cannot overwrite the error's own code.
    assert trail[-1].details["code"] == "INSUFFICIENT_FUNDS"
    assert trail[-1].details["balance"] == 3
    assert worker.stats["failed"] == 1 and worker.stats["retried"] == 0

    (reply,) = await ReplyQueue(pool, REPLIES, schema=schema).read()
    assert reply.outcome == ReplyOutcome.FAILED
    assert reply.error_code == "INSUFFICIENT_FUNDS"
    assert reply.error_message == "balance is 3, asked 10"
    assert reply.result is None


async def test_permanent_error_goes_straight_to_troubleshooting_with_its_error(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    calls = 0
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Ship")
    async def ship_with_bad_address(command: Command, ctx: HandlerContext) -> None:
        nonlocal calls
        calls += 1
        raise PermanentCommandError("BAD_ADDRESS", "no such street")

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Ship", command_id, {}, reply_to=REPLIES, max_attempts=5)
    async with running(make_worker(pool, schema, registry)) as worker:
        meta = await wait_for_status(
            bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE
        )

    assert calls == 1 and meta.attempts == 1
    (item,) = await TroubleshootingQueue(pool, schema=schema).list_troubleshooting(DOMAIN)
    assert item.command_id == command_id
    assert item.last_error_type == "PermanentCommandError"
    assert item.last_error_code == "BAD_ADDRESS"
    assert item.last_error_message == "no such street"
    assert item.last_error_traceback is not None
    assert "ship_with_bad_address" in item.last_error_traceback
    assert "PermanentCommandError: [BAD_ADDRESS] no such street" in item.last_error_traceback
    assert await event_types(bus, command_id) == [
        "SENT",
        "RECEIVED",
        "MOVED_TO_TROUBLESHOOTING_QUEUE",
    ]
    assert await queue_messages(pool, schema, command_id) == 0
    assert worker.stats["troubleshooting"] == 1
    # The troubleshooting queue does not answer; the operator's action will.
    assert await ReplyQueue(pool, REPLIES, schema=schema).read() == []


async def test_missing_handler_parks_the_command_with_a_clear_error_and_work_goes_on(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()

    async def known(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        return {"ok": True}

    registry.register(DOMAIN, "Known", known)
    orphan, fine = uuid.uuid4(), uuid.uuid4()
    await bus.send(DOMAIN, "Unknown", orphan, {})
    await bus.send(DOMAIN, "Known", fine, {})
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(bus, DOMAIN, orphan, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
        await wait_for_status(bus, DOMAIN, fine, CommandStatus.COMPLETED)

    assert meta.attempts == 1  # parked at once, not retried in a loop
    assert meta.last_error_type == "HandlerNotFound"
    assert meta.last_error_code == "NO_HANDLER"
    assert meta.last_error_message is not None
    assert "Unknown" in meta.last_error_message and DOMAIN in meta.last_error_message


async def test_a_result_that_is_not_a_json_object_parks_the_command(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()

    async def returns_a_list(command: Command, ctx: HandlerContext) -> Any:
        return [1, 2, 3]

    registry.register(DOMAIN, "Odd", returns_a_list)
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Odd", command_id, {})
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(
            bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE
        )
    assert meta.last_error_code == "INVALID_RESULT"
    assert meta.last_error_message is not None and "list" in meta.last_error_message


async def test_plain_def_handler_runs_in_a_worker_thread_not_on_the_event_loop(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    threads: list[threading.Thread] = []
    conn_errors: list[Exception] = []
    registry = HandlerRegistry()

    def blocking(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        threads.append(threading.current_thread())
        try:
            ctx.conn  # noqa: B018 - the worker's AsyncConnection is for async handlers
        except ConfigurationError as exc:
            conn_errors.append(exc)
        return {"n": command.data["n"] * 2, "attempt": ctx.attempt}

    registry.register(DOMAIN, "Double", blocking)
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Double", command_id, {"n": 21}, reply_to=REPLIES)
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    assert meta.result == {"n": 42, "attempt": 1}
    (thread,) = threads
    assert thread is not threading.current_thread()  # the loop runs on this thread
    assert thread.name.startswith(f"commandbus-{DOMAIN}")
    assert len(conn_errors) == 1
    (reply,) = await ReplyQueue(pool, REPLIES, schema=schema).read()
    assert reply.outcome == ReplyOutcome.SUCCESS and reply.result == {"n": 42, "attempt": 1}


async def test_plain_def_handler_errors_steer_the_outcome_too(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()

    def refuse(command: Command, ctx: HandlerContext) -> None:
        raise BusinessRuleError("CLOSED", "the shop is closed")

    registry.register(DOMAIN, "Refuse", refuse)
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Refuse", command_id, {})
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.FAILED)
    assert meta.last_error_code == "CLOSED" and meta.attempts == 1


async def test_values_postgresql_cannot_store_spoil_no_outcome_of_other_commands(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    """Outcomes are recorded in batches: one unstorable value must not fail the others."""
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Odd")
    async def odd(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        kind = command.data["kind"]
        if kind == "nul-result":
            return {"text": "a\x00b"}
        if kind == "nul-error":
            raise PermanentCommandError("BAD\x00CODE", "bad \x00 byte \ud800")
        if kind == "odd-details":
            raise BusinessRuleError("NO", "no", {"ratio": float("nan"), "note": "x\x00"})
        return {"fine": True}

    kinds = ["nul-result", "nul-error", "odd-details", "fine", "fine"]
    ids = [uuid.uuid4() for _ in kinds]
    await bus.send_batch(
        [SendRequest(DOMAIN, "Odd", i, {"kind": k}) for i, k in zip(ids, kinds, strict=True)]
    )
    async with running(make_worker(pool, schema, registry, concurrency=5)):
        results = {
            kind: await wait_for_status(bus, DOMAIN, command_id, status)
            for kind, command_id, status in zip(
                kinds,
                ids,
                [
                    CommandStatus.IN_TROUBLESHOOTING_QUEUE,
                    CommandStatus.IN_TROUBLESHOOTING_QUEUE,
                    CommandStatus.FAILED,
                    CommandStatus.COMPLETED,
                    CommandStatus.COMPLETED,
                ],
                strict=True,
            )
        }
    assert all(meta.attempts == 1 for meta in results.values())
    assert results["nul-result"].last_error_code == "INVALID_RESULT"
    assert results["nul-error"].last_error_code == "BAD\\x00CODE"
    assert results["nul-error"].last_error_message == "bad \\x00 byte \\ud800"
    failed = (await bus.get_audit_trail(ids[2]))[-1]
    assert failed.details["ratio"] == "nan" and failed.details["note"] == "x\\x00"
