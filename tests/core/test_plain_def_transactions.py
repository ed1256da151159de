"""Plain-``def`` handlers write in the worker's transaction through ``ctx.sync_conn``: their
writes commit with "completed" (the same transaction: one xmin), roll back with a
failure, and misuse of the library inside a handler is a permanent failure."""

from __future__ import annotations

import uuid

import psycopg
from psycopg_pool import AsyncConnectionPool

from commandbus import Command, CommandBus, CommandStatus, HandlerContext, HandlerRegistry
from core.helpers import DOMAIN, execute, make_worker, running, wait_for_status

TABLE = "CREATE TABLE {schema}.shipments (order_id text PRIMARY KEY, attempt int)"


async def test_writes_on_sync_conn_commit_in_the_outcomes_transaction(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    await execute(pool, schema, TABLE)
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Ship")
    def ship(command: Command, ctx: HandlerContext) -> dict[str, str]:
        assert isinstance(ctx.sync_conn, psycopg.Connection)
        ctx.sync_conn.execute(
            f'INSERT INTO "{schema}".shipments VALUES (%s, %s)',
            (command.data["order_id"], ctx.attempt),
        )
        return {"shipped": command.data["order_id"]}

    command_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry)) as worker:
        await bus.send(DOMAIN, "Ship", command_id, {"order_id": "o-1"})
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.result == {"shipped": "o-1"}
    assert worker.stats["completed"] == 1
    (shipment_xmin,) = await execute(
        pool, schema, "SELECT xmin::text FROM {schema}.shipments WHERE order_id = 'o-1'"
    )
    (command_xmin,) = await execute(
        pool,
        schema,
        "SELECT xmin::text FROM {schema}.commands WHERE command_id = %s",
        (command_id,),
    )
    assert shipment_xmin == command_xmin  # one transaction: the write and "completed"


async def test_a_failure_rolls_back_the_handlers_writes_and_the_retry_commits_them(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    await execute(pool, schema, TABLE)
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Ship")
    def ship(command: Command, ctx: HandlerContext) -> None:
        with ctx.sync_conn.transaction():  # a savepoint in the worker's transaction
            ctx.sync_conn.execute(
                f'INSERT INTO "{schema}".shipments VALUES (%s, %s)', ("o-1", ctx.attempt)
            )
        if ctx.attempt == 1:
            raise ConnectionError("the courier API timed out")

    command_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry)) as worker:
        await bus.send(DOMAIN, "Ship", command_id, {})
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.attempts == 2
    assert worker.stats == {**worker.stats, "retried": 1, "completed": 1}
    rows = await execute(pool, schema, "SELECT order_id, attempt FROM {schema}.shipments")
    assert rows == [("o-1", 2)]  # attempt 1's write was rolled back with its failure


async def test_a_plain_handler_that_never_asks_for_sync_conn_opens_no_connection(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "Noop", lambda command, ctx: None)
    command_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry)) as worker:
        await bus.send(DOMAIN, "Noop", command_id, {})
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        assert worker._threads is not None and not worker._threads.sync_conns_opened


async def test_misuse_of_the_library_in_a_handler_is_parked_at_once(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "AsyncAsksSync")
    async def async_asks_sync(command: Command, ctx: HandlerContext) -> None:
        ctx.sync_conn.execute("SELECT 1")

    @registry.handler(DOMAIN, "PlainAsksAsync")
    def plain_asks_async(command: Command, ctx: HandlerContext) -> None:
        ctx.conn  # noqa: B018 - the misuse under test

    @registry.handler(DOMAIN, "BadSend")
    async def bad_send(command: Command, ctx: HandlerContext) -> None:
        await bus.send("not a domain!", "X", uuid.uuid4(), {})

    ids = {name: uuid.uuid4() for name in ("AsyncAsksSync", "PlainAsksAsync", "BadSend")}
    async with running(make_worker(pool, schema, registry)):
        for name, command_id in ids.items():
            await bus.send(DOMAIN, name, command_id, {}, max_attempts=5)
        for name, command_id in ids.items():
            meta = await wait_for_status(
                bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE
            )
            assert meta.attempts == 1, name  # not retried: retrying cannot fix misuse
    errors = {
        row[0]: row[1]
        for row in await execute(
            pool, schema, "SELECT command_type, last_error_type FROM {schema}.commands"
        )
    }
    assert errors == {
        "AsyncAsksSync": "ConfigurationError",
        "PlainAsksAsync": "ConfigurationError",
        "BadSend": "ValidationError",
    }
