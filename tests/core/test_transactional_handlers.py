"""``ctx.conn``: an async handler's writes commit with "completed", or roll back with a failure."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BusinessRuleError,
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    TransientCommandError,
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


@pytest.fixture
async def ledger(pool: AsyncConnectionPool, schema: str) -> str:
    """An application table living next to the bus's tables."""
    await execute(
        pool, schema, "CREATE TABLE {schema}.ledger (command_id uuid, attempt int, amount int)"
    )
    return f'"{schema}".ledger'


async def _ledger_rows(pool: AsyncConnectionPool, ledger: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT command_id, attempt, amount FROM {ledger} ORDER BY 2")
        return await cur.fetchall()


async def test_writes_on_ctx_conn_commit_in_the_completion_transaction(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, ledger: str
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Book")
    async def book(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        await ctx.conn.execute(
            f"INSERT INTO {ledger} VALUES (%s, %s, %s)",
            [command.command_id, ctx.attempt, command.data["amount"]],
        )
        return {"booked": command.data["amount"]}

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Book", command_id, {"amount": 7})
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    assert meta.result == {"booked": 7}
    assert await _ledger_rows(pool, ledger) == [(command_id, 1, 7)]
    # Same transaction: the ledger row and the COMPLETED command row share their xmin.
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT (SELECT xmin::text FROM {ledger}),"
            f' (SELECT xmin::text FROM "{schema}".commands WHERE command_id = %s)',
            [command_id],
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == row[1]


async def test_writes_on_ctx_conn_roll_back_when_the_handler_fails(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, ledger: str
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Book")
    async def book_then_refuse(command: Command, ctx: HandlerContext) -> None:
        await ctx.conn.execute(f"INSERT INTO {ledger} VALUES (%s, 1, 1)", [command.command_id])
        raise BusinessRuleError("LIMIT", "over the limit")

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Book", command_id, {}, reply_to="replies")
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.FAILED)

    assert meta.last_error_code == "LIMIT"
    assert await _ledger_rows(pool, ledger) == []


async def test_a_retried_handler_keeps_only_the_writes_of_its_successful_attempt(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, ledger: str
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Book")
    async def book(command: Command, ctx: HandlerContext) -> None:
        await ctx.conn.execute(
            f"INSERT INTO {ledger} VALUES (%s, %s, 5)", [command.command_id, ctx.attempt]
        )
        if ctx.attempt < 3:
            raise TransientCommandError("DEADLOCK", "try again")

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Book", command_id, {}, max_attempts=3)
    async with running(make_worker(pool, schema, registry)):
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    assert await _ledger_rows(pool, ledger) == [(command_id, 3, 5)]


async def test_a_failed_statement_swallowed_by_the_handler_is_not_a_success(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, ledger: str
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Book")
    async def swallows(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        await ctx.conn.execute(f"INSERT INTO {ledger} VALUES (%s, 1, 1)", [command.command_id])
        with contextlib.suppress(psycopg.DataError):
            await ctx.conn.execute("SELECT 1 / 0")
        # The transaction is aborted now: "completed" must not be recorded.
        return {"ok": True}

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Book", command_id, {}, max_attempts=1)
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(
            bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE
        )

    assert meta.last_error_message is not None and "ctx.conn" in meta.last_error_message
    assert await _ledger_rows(pool, ledger) == []


async def test_a_handler_that_lost_its_lease_does_not_commit_its_writes(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, ledger: str
) -> None:
    """The late attempt's writes must roll back: the redelivered attempt owns the command."""
    second_done = asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Book")
    async def book(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            await wait_for_event(second_done, what="the redelivered attempt")
        await ctx.conn.execute(
            f"INSERT INTO {ledger} VALUES (%s, %s, 9)", [command.command_id, ctx.attempt]
        )
        if ctx.attempt > 1:
            second_done.set()
        return {"attempt": ctx.attempt}

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Book", command_id, {}, max_attempts=3)
    worker = make_worker(pool, schema, registry, visibility_timeout=0.4)
    async with running(worker):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

        async def late_attempt_ended() -> bool:
            return worker.stats["lease_lost"] == 1

        await wait_until(late_attempt_ended, what="the late attempt to end")

    assert meta.result == {"attempt": 2}
    assert await event_types(bus, command_id) == ["SENT", "RECEIVED", "RECEIVED", "COMPLETED"]
    assert await _ledger_rows(pool, ledger) == [(command_id, 2, 9)]


async def test_ctx_conn_stays_transactional_on_a_pool_lent_in_autocommit(
    database_url: str, pool: AsyncConnectionPool, schema: str, ledger: str
) -> None:
    """Applications open pools with autocommit=True; the handler's writes must still wait
    for the outcome: committed with it, rolled back with a failure."""
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Book")
    async def book(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        await ctx.conn.execute(
            f"INSERT INTO {ledger} VALUES (%s, %s, %s)",
            [command.command_id, ctx.attempt, command.data["amount"]],
        )
        if command.data["amount"] < 0:
            raise BusinessRuleError("NEGATIVE", "no negative bookings")
        return {"booked": command.data["amount"]}

    async with AsyncConnectionPool(
        database_url, min_size=2, max_size=10, kwargs={"autocommit": True}, open=False
    ) as autocommit_pool:
        bus = CommandBus(autocommit_pool, schema=schema)
        booked, refused = uuid.uuid4(), uuid.uuid4()
        await bus.send(DOMAIN, "Book", booked, {"amount": 5})
        await bus.send(DOMAIN, "Book", refused, {"amount": -1})
        async with running(make_worker(autocommit_pool, schema, registry)):
            await wait_for_status(bus, DOMAIN, booked, CommandStatus.COMPLETED)
            await wait_for_status(bus, DOMAIN, refused, CommandStatus.FAILED)
        async with autocommit_pool.connection() as conn:  # lent back as it was lent out
            assert conn.autocommit is True

    assert await _ledger_rows(pool, ledger) == [(booked, 1, 5)]


async def test_a_transaction_block_opened_first_on_ctx_conn_still_commits_with_the_outcome(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, ledger: str
) -> None:
    """The natural psycopg idiom: on its own, a first ``transaction()`` block would BEGIN
    and COMMIT before the outcome; lent by the worker, it is a savepoint in its
    transaction, so the writes commit with COMPLETED or roll back with a failure."""
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Book")
    async def book(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        async with ctx.conn.transaction():
            await ctx.conn.execute(
                f"INSERT INTO {ledger} VALUES (%s, %s, %s)",
                [command.command_id, ctx.attempt, command.data["amount"]],
            )
        if command.data["amount"] < 0:
            raise BusinessRuleError("NEGATIVE", "no negative bookings")
        return {"booked": command.data["amount"]}

    booked, refused = uuid.uuid4(), uuid.uuid4()
    await bus.send(DOMAIN, "Book", booked, {"amount": 3})
    await bus.send(DOMAIN, "Book", refused, {"amount": -3})
    async with running(make_worker(pool, schema, registry)):
        await wait_for_status(bus, DOMAIN, booked, CommandStatus.COMPLETED)
        await wait_for_status(bus, DOMAIN, refused, CommandStatus.FAILED)

    # The refused command's block had ended before the handler failed: committed on its
    # own, its row would be here.
    assert await _ledger_rows(pool, ledger) == [(booked, 1, 3)]
    async with pool.connection() as conn:  # the connection went back without the shim
        assert "transaction" not in vars(conn)


async def test_a_handler_that_commits_ctx_conn_on_its_own_is_warned_about(
    pool: AsyncConnectionPool,
    bus: CommandBus,
    schema: str,
    ledger: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An explicit commit() cannot be undone: the worker says so (once per command type)."""
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Book")
    async def book(command: Command, ctx: HandlerContext) -> None:
        await ctx.conn.execute(
            f"INSERT INTO {ledger} VALUES (%s, %s, 1)", [command.command_id, ctx.attempt]
        )
        await ctx.conn.commit()

    @registry.handler(DOMAIN, "Skip")
    async def skip(command: Command, ctx: HandlerContext) -> None:
        repository = ctx.conn  # taken, then nothing to write on this path: no warning
        assert repository is not None

    ids = [uuid.uuid4(), uuid.uuid4()]
    for command_id in ids:
        await bus.send(DOMAIN, "Book", command_id, {})
    skipped = uuid.uuid4()
    await bus.send(DOMAIN, "Skip", skipped, {})
    ids.append(skipped)
    with caplog.at_level("WARNING", logger="commandbus.worker"):
        async with running(make_worker(pool, schema, registry)):
            for command_id in ids:
                await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    warnings = [r.getMessage() for r in caplog.records if "left no transaction open" in r.message]
    assert len(warnings) == 1, warnings
    assert f"{DOMAIN}/Book" in warnings[0]
