"""Handlers that fail in unusual ways: the worker records a failure and keeps working.

``sys.exit()`` (argparse on bad input) or a ``KeyboardInterrupt`` raised inside a plain-def
handler's thread, a ``SystemExit`` from an async handler, a ``CancelledError`` from a
task the handler awaited, a handler whose ``ctx.conn`` connection dies: each is the
handler's failure, recorded at once and retried like any other, never the end of the
worker and never a command left IN_PROGRESS until its lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    migrate,
)
from core.helpers import DOMAIN, make_worker, running, wait_for_status

pytestmark = pytest.mark.anyio  # parametrised below: the conftest marks too late for that

LONG_LEASE = 60  # a failure must be recorded at once, not found when the lease expires


def _exits(kind: str) -> Any:
    def plain(command: Command, ctx: HandlerContext) -> None:
        if kind == "exit":
            sys.exit(2)
        raise KeyboardInterrupt

    async def coroutine(command: Command, ctx: HandlerContext) -> None:
        raise SystemExit(2)

    return coroutine if kind == "async exit" else plain


@pytest.mark.parametrize("kind", ["exit", "keyboard interrupt", "async exit"])
async def test_a_handler_that_exits_fails_its_attempt_and_the_worker_goes_on(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, kind: str
) -> None:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "Exit", _exits(kind))

    async def ok(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        return {"ok": True}

    registry.register(DOMAIN, "Ok", ok)
    exiting, fine = uuid.uuid4(), uuid.uuid4()
    await bus.send(DOMAIN, "Exit", exiting, {}, max_attempts=2)
    worker = make_worker(pool, schema, registry, visibility_timeout=LONG_LEASE)
    async with running(worker):
        parked = await wait_for_status(bus, DOMAIN, exiting, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
        await bus.send(DOMAIN, "Ok", fine, {})
        await wait_for_status(bus, DOMAIN, fine, CommandStatus.COMPLETED)
        assert worker.running

    expected = "KeyboardInterrupt" if kind == "keyboard interrupt" else "SystemExit"
    assert parked.attempts == 2
    assert parked.last_error_type == expected


def _cancelled_call(kind: str) -> Any:
    async def coroutine(command: Command, ctx: HandlerContext) -> None:
        helper = asyncio.create_task(asyncio.sleep(30))
        asyncio.get_running_loop().call_soon(helper.cancel)  # cancelled by "someone else"
        await helper

    def plain(command: Command, ctx: HandlerContext) -> None:
        async def cancelled() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(30)

        asyncio.run(cancelled())  # raises CancelledError in the handler's thread

    return coroutine if kind == "async" else plain


@pytest.mark.parametrize("kind", ["async", "plain def"])
async def test_a_cancelled_task_awaited_by_a_handler_fails_the_attempt_at_once(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, kind: str
) -> None:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "Call", _cancelled_call(kind))

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Call", command_id, {}, max_attempts=1)
    async with running(make_worker(pool, schema, registry, visibility_timeout=LONG_LEASE)):
        parked = await wait_for_status(
            bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE, timeout=10
        )

    assert parked.last_error_type == "CancelledError"


@pytest.mark.parametrize("handler_noticed", [False, True])
async def test_a_handler_whose_connection_dies_is_not_completed_and_fails_at_once(
    pool: AsyncConnectionPool,
    bus: CommandBus,
    schema: str,
    database_url: str,
    handler_noticed: bool,
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Write")
    async def write(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        await ctx.conn.execute("SELECT 1")  # the handler's transaction is open
        with psycopg.connect(database_url, autocommit=True) as admin:  # a failover, say
            admin.execute("SELECT pg_terminate_backend(%s)", [ctx.conn.info.backend_pid])
        if handler_noticed:  # ... and swallowed the error: its writes are gone all the same
            with contextlib.suppress(psycopg.OperationalError):
                await ctx.conn.execute("SELECT 2")
        return {"written": True}

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Write", command_id, {}, max_attempts=1)
    async with running(make_worker(pool, schema, registry, visibility_timeout=LONG_LEASE)):
        parked = await wait_for_status(
            bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE, timeout=10
        )

    assert parked.result is None
    assert parked.last_error_message is not None
    if handler_noticed:
        assert "connection of ctx.conn was lost" in parked.last_error_message
    else:  # recording on it failed with the server's own words
        assert "terminating connection" in parked.last_error_message


async def test_a_worker_gives_every_connection_back_in_autocommit_if_lent_so(
    database_url: str, schema: str
) -> None:
    """The listener's connection too: an application that relies on autocommit (VACUUM,
    statements outside transactions) must not find the pool changed under it."""
    registry = HandlerRegistry()

    async def touch(command: Command, ctx: HandlerContext) -> None:
        await ctx.conn.execute("SELECT 1")

    registry.register(DOMAIN, "Touch", touch)
    async with AsyncConnectionPool(
        database_url, min_size=6, max_size=6, kwargs={"autocommit": True}, open=False
    ) as app_pool:
        await migrate(app_pool, schema=schema)
        bus = CommandBus(app_pool, schema=schema)
        ids = [uuid.uuid4() for _ in range(8)]
        for command_id in ids:
            await bus.send(DOMAIN, "Touch", command_id, {})
        worker = make_worker(app_pool, schema, registry, concurrency=2)
        async with running(worker):  # handlers borrow, and the listener holds, connections
            for command_id in ids:
                await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        connections = [await app_pool.getconn() for _ in range(6)]
        try:
            assert [c.autocommit for c in connections] == [True] * 6
        finally:
            for conn in connections:
                await app_pool.putconn(conn)
