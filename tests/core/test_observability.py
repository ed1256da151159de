"""What a worker tells: log records an on-call engineer can use, and hooks that see
each send, handler start, recorded outcome and routed reply."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    ProcessStatus,
    RetryPolicy,
    SendRequest,
)
from commandbus.hooks import CommandSent, HandlerFinished, HandlerStarted, ReplyRouted
from core._sagas import saga_env
from core.helpers import DOMAIN, make_worker, running, wait_for_status, wait_until

FIELDS = ("domain", "command_type", "command_id", "attempt", "worker")


async def test_a_retried_then_parked_command_logs_warnings_then_one_error_with_its_fields(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Lookup")
    async def lookup(command: Command, ctx: HandlerContext) -> None:
        raise KeyError("customer-42")

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Lookup", command_id, {}, max_attempts=3)
    worker = make_worker(pool, schema, registry, retry_policy=RetryPolicy(backoff=[0.01]))
    with caplog.at_level(logging.DEBUG, logger="commandbus.worker"):
        async with running(worker):
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE)

    mine = [r for r in caplog.records if getattr(r, "command_id", None) == str(command_id)]
    assert [(r.levelname, r.attempt) for r in mine] == [  # type: ignore[attr-defined]
        ("WARNING", 1),
        ("WARNING", 2),
        ("ERROR", 3),
    ]
    for record in mine:
        assert {f: getattr(record, f) for f in FIELDS} == {
            "domain": DOMAIN,
            "command_type": "Lookup",
            "command_id": str(command_id),
            "attempt": record.attempt,  # type: ignore[attr-defined]
            "worker": worker.name,
        }
        assert record.error_type == "KeyError"  # type: ignore[attr-defined]
    assert "retrying in 0.01 s" in mine[0].getMessage()
    parked = mine[-1].getMessage()
    assert "troubleshooting queue" in parked and "Traceback" in parked and "customer-42" in parked


async def test_a_success_is_logged_at_debug_only(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Ok")
    async def ok(command: Command, ctx: HandlerContext) -> None:
        return None

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Ok", command_id, {})
    with caplog.at_level(logging.DEBUG, logger="commandbus.worker"):
        async with running(make_worker(pool, schema, registry)):
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    mine = [r for r in caplog.records if getattr(r, "command_id", None) == str(command_id)]
    assert [r.levelno for r in mine] == [logging.DEBUG]
    assert mine[0].outcome == "COMPLETED"  # type: ignore[attr-defined]


async def test_worker_hooks_see_each_start_and_recorded_outcome_plain_or_async(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen_async: list[Any] = []
    seen_plain: list[Any] = []

    async def async_hook(event: Any) -> None:
        seen_async.append(event)

    def plain_hook(event: Any) -> None:
        seen_plain.append(event)

    def broken_hook(event: Any) -> None:
        raise RuntimeError("a hook with a bug")

    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Work")
    async def work(command: Command, ctx: HandlerContext) -> None:
        if command.data["fail"]:
            raise ValueError("no")
        await asyncio.sleep(0.01)

    ok, bad = uuid.uuid4(), uuid.uuid4()
    await bus.send(DOMAIN, "Work", ok, {"fail": False})
    await bus.send(DOMAIN, "Work", bad, {"fail": True}, max_attempts=1)
    worker = make_worker(pool, schema, registry, hooks=[async_hook, plain_hook, broken_hook])
    async with running(worker):
        await wait_for_status(bus, DOMAIN, ok, CommandStatus.COMPLETED)
        await wait_for_status(bus, DOMAIN, bad, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
        await wait_until(lambda: _at_least(seen_plain, 4), what="four events")

    assert [type(e) for e in seen_async] == [type(e) for e in seen_plain]
    started = {e.command_id: e for e in seen_plain if isinstance(e, HandlerStarted)}
    finished = {e.command_id: e for e in seen_plain if isinstance(e, HandlerFinished)}
    assert set(started) == set(finished) == {ok, bad}
    assert started[ok].attempt == 1 and started[ok].worker == worker.name
    assert 0 <= started[ok].waited < 60
    assert finished[ok].outcome == "COMPLETED" and finished[ok].duration >= 0.01
    assert finished[bad].outcome == "MOVED_TO_TROUBLESHOOTING_QUEUE"
    assert (finished[bad].error_type, finished[bad].error_code) == ("ValueError", "ValueError")
    broken = [r for r in caplog.records if "a hook with a bug" in str(r.exc_info)]
    assert len(broken) == 2  # once per event type, not once per event


async def test_bus_hooks_see_sends_and_whether_they_are_in_the_callers_transaction(
    pool: AsyncConnectionPool, database_url: str, schema: str
) -> None:
    seen: list[CommandSent] = []
    bus = CommandBus(pool, schema=schema, hooks=[seen.append])
    first = uuid.uuid4()
    await bus.send(DOMAIN, "A", first, {}, priority=3)
    batch = [SendRequest(DOMAIN, "B", uuid.uuid4(), {}) for _ in range(2)]
    await bus.send_batch(batch)
    inside = uuid.uuid4()
    async with await AsyncConnection.connect(database_url) as conn, conn.transaction():
        await bus.send(DOMAIN, "C", inside, {}, conn=conn)

    assert [(e.command_type, e.command_id, e.in_callers_transaction) for e in seen] == [
        ("A", first, False),
        ("B", batch[0].command_id, False),
        ("B", batch[1].command_id, False),
        ("C", inside, True),
    ]
    assert seen[0].priority == 3 and seen[0].msg_id > 0


async def test_router_hooks_see_each_reply_applied(pool: AsyncConnectionPool, schema: str) -> None:
    seen: list[ReplyRouted] = []
    async with saga_env(pool, schema, router_options={"hooks": [seen.append]}) as env:
        process_id = await env.start_order("o-1", 10)

        async def done() -> bool:
            info = await env.repo.get(process_id)
            return info is not None and info.status == ProcessStatus.COMPLETED

        await wait_until(done, what="the saga to complete")

    assert seen and {e.result for e in seen} == {"applied"}
    assert {e.correlation_id for e in seen} == {process_id}


async def _at_least(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def test_operator_actions_are_logged_at_info_with_the_operator(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    from commandbus import PermanentCommandError, TroubleshootingQueue

    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Broken")
    async def broken(command: Command, ctx: HandlerContext) -> None:
        raise PermanentCommandError("BROKEN", "no")

    ids = [uuid.uuid4(), uuid.uuid4()]
    for command_id in ids:
        await bus.send(DOMAIN, "Broken", command_id, {})
    async with running(make_worker(pool, schema, registry)):
        for command_id in ids:
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
    tsq = TroubleshootingQueue(pool, schema=schema)
    with caplog.at_level(logging.INFO, logger="commandbus.troubleshooting"):
        await tsq.operator_cancel(DOMAIN, ids[0], reason="duplicate order", operator="alice")
        await tsq.operator_complete(DOMAIN, ids[1], result={"done": True}, operator="bob")

    records = [r for r in caplog.records if r.name == "commandbus.troubleshooting"]
    actions = [(r.outcome, r.operator, r.command_id) for r in records]  # type: ignore[attr-defined]
    assert actions == [
        ("OPERATOR_CANCEL", "alice", str(ids[0])),
        ("OPERATOR_COMPLETE", "bob", str(ids[1])),
    ]
    assert records[0].levelno == logging.INFO
    assert "duplicate order" in records[0].getMessage()
