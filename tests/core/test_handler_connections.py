"""An async handler takes a pool connection only if it uses ``ctx.conn``.

Each command type's first run gets one; a handler that did not touch ``ctx.conn`` then
runs without (no checkout, its outcome batched). If it asks for ``ctx.conn`` later, it is
run again at once with a connection, within the same lease, and keeps one from then on.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
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

    # Dequeues, batched outcome statements, the listener, the poll of wait_for_count and
    # one eager first run: far fewer than one checkout per command.
    assert checkouts < n / 2, checkouts


async def test_a_handler_that_asks_for_ctx_conn_late_runs_again_with_it_in_the_same_lease(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    await execute(pool, schema, "CREATE TABLE {schema}.notes (command_id uuid, attempt int)")
    runs: list[tuple[uuid.UUID, bool]] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Maybe")
    async def maybe(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        if not command.data["write"]:
            runs.append((command.command_id, False))
            return {"wrote": False}
        conn = ctx.conn  # raises for the run without a connection: run again with one
        runs.append((command.command_id, True))
        await conn.execute(
            f'INSERT INTO "{schema}".notes VALUES (%s, %s)', [command.command_id, ctx.attempt]
        )
        return {"wrote": True}

    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with running(make_worker(pool, schema, registry, concurrency=1)):
        await bus.send(DOMAIN, "Maybe", first, {"write": False})
        await wait_for_count(pool, schema, CommandStatus.COMPLETED, 1)
        await bus.send(DOMAIN, "Maybe", second, {"write": True})
        await wait_for_count(pool, schema, CommandStatus.COMPLETED, 2)
        await bus.send(DOMAIN, "Maybe", third, {"write": True})
        await wait_for_count(pool, schema, CommandStatus.COMPLETED, 3)

    assert runs == [(first, False), (second, True), (third, True)]
    rows = await execute(pool, schema, "SELECT command_id, attempt FROM {schema}.notes")
    assert sorted(rows) == sorted([(second, 1), (third, 1)])  # one attempt, written once
    meta = await bus.get_command(DOMAIN, second)
    assert meta is not None and meta.result == {"wrote": True} and meta.attempts == 1
    assert await event_types(bus, second) == ["SENT", "RECEIVED", "COMPLETED"]
