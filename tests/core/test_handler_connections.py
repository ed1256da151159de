"""``ctx.conn`` is taken from the pool at a handler's first statement on it, not before.

A handler runs once per attempt, whether or not (and whenever) it uses ``ctx.conn``: one
that never does costs no pool checkout (its outcome is recorded in a batch); one that
does gets its writes committed with the outcome.
"""

from __future__ import annotations

import itertools
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
    InvalidOperationError,
    SendRequest,
)
from core.helpers import DOMAIN, event_types, execute, make_worker, running, wait_for_count


async def test_a_handler_that_never_uses_ctx_conn_takes_no_connection_per_command(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    n = 200
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Noop")
    async def noop(command: Command, ctx: HandlerContext) -> None:
        return None

    await bus.send_batch([SendRequest(DOMAIN, "Noop", uuid.uuid4(), {}) for _ in range(n)])
    before = pool.get_stats()["requests_num"]
    async with running(make_worker(pool, schema, registry, concurrency=10)):
        await wait_for_count(pool, schema, CommandStatus.COMPLETED, n)
    checkouts = pool.get_stats()["requests_num"] - before

    # Dequeues, batched outcome statements, the listener and the poll of wait_for_count:
    # far fewer than one checkout per command.
    assert checkouts < n / 2, checkouts


@pytest.mark.parametrize(
    "order", sorted(set(itertools.permutations([False, True, True, False]))), ids=str
)
async def test_a_handler_using_ctx_conn_for_some_inputs_runs_once_per_attempt(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, order: tuple[bool, ...]
) -> None:
    await execute(pool, schema, "CREATE TABLE {schema}.notes (command_id uuid, attempt int)")
    calls: dict[uuid.UUID, int] = {}
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Maybe")
    async def maybe(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        calls[command.command_id] = calls.get(command.command_id, 0) + 1
        if not command.data["write"]:
            return {"wrote": False}
        await ctx.conn.execute(
            f'INSERT INTO "{schema}".notes VALUES (%s, %s)', [command.command_id, ctx.attempt]
        )
        return {"wrote": True}

    ids = [uuid.uuid4() for _ in order]
    async with running(make_worker(pool, schema, registry, concurrency=1)):
        for done, (command_id, write) in enumerate(zip(ids, order, strict=True), start=1):
            await bus.send(DOMAIN, "Maybe", command_id, {"write": write})
            await wait_for_count(pool, schema, CommandStatus.COMPLETED, done)

    assert calls == dict.fromkeys(ids, 1)  # exactly once each, whatever came before
    rows = await execute(pool, schema, "SELECT command_id, attempt FROM {schema}.notes")
    assert sorted(rows) == sorted((i, 1) for i, w in zip(ids, order, strict=True) if w)
    for command_id, write in zip(ids, order, strict=True):
        meta = await bus.get_command(DOMAIN, command_id)
        assert meta is not None and meta.result == {"wrote": write} and meta.attempts == 1
        assert await event_types(bus, command_id) == ["SENT", "RECEIVED", "COMPLETED"]


async def test_writes_taken_late_still_roll_back_with_a_failure(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    await execute(pool, schema, "CREATE TABLE {schema}.notes (command_id uuid)")
    calls: list[uuid.UUID] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Fails")
    async def fails(command: Command, ctx: HandlerContext) -> None:
        calls.append(command.command_id)
        await ctx.conn.execute(f'INSERT INTO "{schema}".notes VALUES (%s)', [command.command_id])
        raise RuntimeError("after writing")

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Fails", command_id, {}, max_attempts=1)
    async with running(make_worker(pool, schema, registry, concurrency=1)):
        await wait_for_count(pool, schema, CommandStatus.IN_TROUBLESHOOTING_QUEUE, 1)
    assert calls == [command_id]
    assert await execute(pool, schema, "SELECT * FROM {schema}.notes") == []


async def test_ctx_conn_offers_the_connection_itself_and_says_what_needs_it_first(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    seen: dict[str, Any] = {}
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Look")
    async def look(command: Command, ctx: HandlerContext) -> None:
        try:
            ctx.conn.info  # noqa: B018 - read before any statement
        except InvalidOperationError as exc:
            seen["error"] = str(exc)
        conn = await ctx.connection()
        seen["real"] = isinstance(conn, psycopg.AsyncConnection)
        seen["same"] = (await ctx.conn) is conn
        async with ctx.conn.cursor() as cur:
            await cur.execute("SELECT 41 + 1")
            seen["row"] = await cur.fetchone()
        seen["pid"] = ctx.conn.info.backend_pid == conn.info.backend_pid

    await bus.send(DOMAIN, "Look", uuid.uuid4(), {})
    async with running(make_worker(pool, schema, registry, concurrency=1)):
        await wait_for_count(pool, schema, CommandStatus.COMPLETED, 1)
    assert "await ctx.connection()" in seen["error"]
    assert seen["real"] and seen["same"] and seen["pid"]
    assert seen["row"] == (42,)


async def test_a_lazy_cursor_and_send_on_ctx_conn_join_the_handlers_transaction(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()
    follow_up = uuid.uuid4()

    @registry.handler(DOMAIN, "First")
    async def first(command: Command, ctx: HandlerContext) -> None:
        await bus.send(DOMAIN, "Second", follow_up, {}, conn=ctx.conn)  # takes it now
        raise RuntimeError("the follow-up must roll back")

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "First", command_id, {}, max_attempts=1)
    async with running(make_worker(pool, schema, registry, concurrency=1)):
        await wait_for_count(pool, schema, CommandStatus.IN_TROUBLESHOOTING_QUEUE, 1)
    assert await bus.get_command(DOMAIN, follow_up) is None
