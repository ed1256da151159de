"""Every component works on a pool the application configured for itself.

Applications open their pool with ``row_factory=dict_row``, a client-side cursor factory
or ``prepare_threshold=0``; the library shares that pool, so none of its statements may
depend on the connection's row or cursor factory, or on when it prepares statements.
The ``pool`` fixture is overridden here: every test of this module (worker,
troubleshooting queue, replies, batches, sagas) runs on each such pool.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg import AsyncClientCursor
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BatchCommand,
    BatchStatus,
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    PermanentCommandError,
    ProcessStatus,
    ReplyOutcome,
    ReplyQueue,
    TroubleshootingQueue,
    migrate,
)
from core._sagas import saga_env
from core.helpers import DOMAIN, make_worker, running, wait_for_status

# Marked here: the conftest adds the anyio mark after parametrisation, too late for it.
pytestmark = pytest.mark.anyio

APP_POOL_SETTINGS: dict[str, dict[str, Any]] = {
    "dict rows, client-side cursors": {
        "row_factory": dict_row,
        "cursor_factory": AsyncClientCursor,
    },
    "every statement prepared": {"prepare_threshold": 0},
}


@pytest.fixture(params=list(APP_POOL_SETTINGS))
def pool_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    return APP_POOL_SETTINGS[request.param]


@pytest.fixture
async def pool(
    pool_settings: dict[str, Any], database_url: str, schema: str
) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(
        database_url, min_size=2, max_size=20, kwargs=pool_settings, open=False
    ) as app_pool:
        await migrate(app_pool, schema=schema)
        yield app_pool


async def test_worker_runs_handlers_and_records_every_outcome(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Ok")
    async def ok(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        await ctx.extend_visibility(30)
        assert ctx.conn is not None
        cur = await ctx.conn.execute("SELECT 41 + 1 AS answer")
        row = await cur.fetchone()
        return {"answer": row["answer"] if isinstance(row, dict) else row[0]}

    @registry.handler(DOMAIN, "Plain")
    def plain(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        return {"plain": True}

    @registry.handler(DOMAIN, "Broken")
    async def broken(command: Command, ctx: HandlerContext) -> None:
        raise PermanentCommandError("BROKEN", "cannot do it")

    ok_id, plain_id, broken_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await bus.send(DOMAIN, "Ok", ok_id, {}, reply_to="app-replies")
    await bus.send(DOMAIN, "Plain", plain_id, {})
    await bus.send(DOMAIN, "Broken", broken_id, {})

    async with running(make_worker(pool, schema, registry)):
        ok_meta = await wait_for_status(bus, DOMAIN, ok_id, CommandStatus.COMPLETED)
        plain_meta = await wait_for_status(bus, DOMAIN, plain_id, CommandStatus.COMPLETED)
        await wait_for_status(bus, DOMAIN, broken_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE)

    assert ok_meta.result == {"answer": 42}
    assert plain_meta.result == {"plain": True}
    replies = ReplyQueue(pool, "app-replies", schema=schema)
    (reply,) = await replies.read(10)
    assert (reply.command_id, reply.outcome) == (ok_id, ReplyOutcome.SUCCESS)
    assert await replies.ack(reply) is True

    tsq = TroubleshootingQueue(pool, schema=schema)
    assert await tsq.count_troubleshooting(DOMAIN) == 1
    assert await tsq.list_domains() == [DOMAIN]
    (item,) = await tsq.list_troubleshooting(DOMAIN)
    assert (item.command_id, item.last_error_code) == (broken_id, "BROKEN")
    assert [i.command_id for i in await tsq.list_all_troubleshooting()] == [broken_id]
    await tsq.operator_complete(DOMAIN, broken_id, result={"by": "hand"}, operator="ops")
    meta = await bus.get_command(DOMAIN, broken_id)
    assert meta is not None and meta.status == CommandStatus.COMPLETED


async def test_operator_retry_and_cancel(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Broken")
    async def broken(command: Command, ctx: HandlerContext) -> None:
        raise PermanentCommandError("BROKEN", "cannot do it")

    retried, canceled = uuid.uuid4(), uuid.uuid4()
    for command_id in (retried, canceled):
        await bus.send(DOMAIN, "Broken", command_id, {})
    tsq = TroubleshootingQueue(pool, schema=schema)
    async with running(make_worker(pool, schema, registry)):
        for command_id in (retried, canceled):
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
        await tsq.operator_cancel(DOMAIN, canceled, reason="not needed", operator="ops")
        await tsq.operator_retry(DOMAIN, retried, operator="ops")
        meta = await wait_for_status(bus, DOMAIN, retried, CommandStatus.IN_TROUBLESHOOTING_QUEUE)

    assert meta.attempts == 1  # reset by the retry, then used once more
    canceled_meta = await bus.get_command(DOMAIN, canceled)
    assert canceled_meta is not None and canceled_meta.status == CommandStatus.CANCELED


async def test_batches_are_created_counted_listed_and_completed(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Ok")
    async def ok(command: Command, ctx: HandlerContext) -> None:
        return None

    done = asyncio.Event()

    async def on_complete(batch: Any) -> None:
        done.set()

    async with bus:
        result = await bus.create_batch(
            DOMAIN,
            [BatchCommand("Ok", uuid.uuid4(), {"i": i}) for i in range(3)],
            name="nightly",
            on_complete=on_complete,
        )
        async with running(make_worker(pool, schema, registry)):
            await asyncio.wait_for(done.wait(), 10)

    info = await bus.get_batch(DOMAIN, result.batch_id)
    assert info is not None and info.status == BatchStatus.COMPLETED
    assert [b.batch_id for b in await bus.list_batches(DOMAIN)] == [result.batch_id]
    commands = await bus.list_batch_commands(DOMAIN, result.batch_id)
    assert {c.status for c in commands} == {CommandStatus.COMPLETED}


async def test_a_saga_runs_to_completion(pool: AsyncConnectionPool, schema: str) -> None:
    async with saga_env(pool, schema) as env:
        process_id = await env.start_order("o-app", 10)
        info = await env.wait_status(process_id, ProcessStatus.COMPLETED)
        assert [p.process_id for p in await env.repo.list(env.saga.domain)] == [process_id]
        trail = await env.repo.get_audit_trail(process_id)

    assert info.completed_steps == ["RESERVE", "CHARGE", "SHIP"]
    assert len(trail) == 3
