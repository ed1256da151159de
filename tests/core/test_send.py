"""Sending one command and reading it back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from enum import Enum

import anyio
import pytest
from psycopg import AsyncClientCursor, AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    CommandBus,
    CommandMetadata,
    CommandStatus,
    DuplicateCommandError,
    SendResult,
    migrate,
)
from core._tables import Tables, wait_for_lock_waiters


async def test_send_then_get_command_round_trips_every_field(bus: CommandBus) -> None:
    command_id, correlation_id = uuid.uuid4(), uuid.uuid4()
    data = {
        "amount": 12.5,
        "items": [1, "two", None],
        "nested": {"ok": True},
        "text": 'żółw € "quoted" \\u0000 is text',
    }
    before = datetime.now(UTC)

    result = await bus.send(
        "payments",
        "Charge",
        command_id,
        data,
        correlation_id=correlation_id,
        reply_to="payments.replies",
        max_attempts=7,
    )

    assert isinstance(result, SendResult)
    assert result.command_id == command_id
    assert isinstance(result.msg_id, int)
    cmd = await bus.get_command("payments", command_id)
    assert isinstance(cmd, CommandMetadata)
    assert (cmd.domain, cmd.command_id, cmd.command_type) == ("payments", command_id, "Charge")
    assert cmd.status is CommandStatus.PENDING
    assert (cmd.attempts, cmd.max_attempts) == (0, 7)
    assert cmd.data == data
    assert cmd.correlation_id == correlation_id
    assert cmd.reply_to == "payments.replies"
    assert cmd.batch_id is None
    assert cmd.result is None
    assert (cmd.last_error_type, cmd.last_error_code, cmd.last_error_message) == (None,) * 3
    assert cmd.created_at.tzinfo is not None
    assert before - timedelta(seconds=5) < cmd.created_at < datetime.now(UTC) + timedelta(seconds=5)
    assert cmd.updated_at == cmd.created_at


async def test_optional_fields_default_to_none_and_the_bus_default_max_attempts(
    bus: CommandBus, schema: str
) -> None:
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {})

    cmd = await bus.get_command("payments", command_id)
    assert cmd is not None
    assert cmd.data == {}
    assert (cmd.correlation_id, cmd.reply_to) == (None, None)
    assert cmd.max_attempts == 3

    other = CommandBus(bus.pool, schema=schema, default_max_attempts=9)
    second = uuid.uuid4()
    await other.send("payments", "Charge", second, {})
    cmd = await other.get_command("payments", second)
    assert cmd is not None and cmd.max_attempts == 9


async def test_send_enqueues_exactly_one_deliverable_message(
    bus: CommandBus, tables: Tables
) -> None:
    command_id = uuid.uuid4()
    result = await bus.send("payments", "Charge", command_id, {"n": 1})

    # The command row is the message: pending, not leased, deliverable from its send on.
    rows = await tables.rows(
        "commands",
        command_id,
        columns="msg_id, domain, status, attempts, lease_id, vt <= now(), vt = created_at",
    )
    assert rows == [(result.msg_id, "payments", "PENDING", 0, None, True, True)]
    assert await tables.counts() == {"commands": 1, "audit": 0}


async def test_each_send_gets_its_own_increasing_msg_id(bus: CommandBus) -> None:
    results = [await bus.send("payments", "Charge", uuid.uuid4(), {}) for _ in range(3)]
    msg_ids = [r.msg_id for r in results]
    assert msg_ids == sorted(set(msg_ids))


async def test_get_command_of_an_unknown_id_is_none(bus: CommandBus) -> None:
    await bus.send("payments", "Charge", known := uuid.uuid4(), {})
    assert await bus.get_command("payments", uuid.uuid4()) is None
    assert await bus.get_command("shipping", known) is None


async def test_the_same_command_id_in_two_domains_is_two_commands(bus: CommandBus) -> None:
    command_id = uuid.uuid4()
    first = await bus.send("payments", "Charge", command_id, {"d": "payments"})
    second = await bus.send("shipping", "Ship", command_id, {"d": "shipping"})

    assert first.msg_id != second.msg_id
    payments = await bus.get_command("payments", command_id)
    shipping = await bus.get_command("shipping", command_id)
    assert payments is not None and payments.data == {"d": "payments"}
    assert shipping is not None and shipping.command_type == "Ship"


async def test_names_at_the_edges_of_the_allowed_alphabet_and_length_are_accepted(
    bus: CommandBus,
) -> None:
    domain = "A-z_0.9" + "x" * 121  # 128 characters
    command_id = uuid.uuid4()
    await bus.send(domain, "v1.Order-Placed_2", command_id, {}, reply_to="r" * 128)

    cmd = await bus.get_command(domain, command_id)
    assert cmd is not None
    assert (cmd.command_type, cmd.reply_to) == ("v1.Order-Placed_2", "r" * 128)


async def test_a_bus_only_sees_its_own_schema(
    bus: CommandBus, database_url: str, schema: str
) -> None:
    other_schema = f"{schema}_other"
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {})
    async with AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False) as pool:
        try:
            await migrate(pool, schema=other_schema)
            other = CommandBus(pool, schema=other_schema)
            assert await other.get_command("payments", command_id) is None
            await other.send("payments", "Charge", command_id, {})  # no duplicate across schemas
        finally:
            async with pool.connection() as conn:
                await conn.execute(
                    sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(other_schema))
                )


async def test_the_pool_gets_its_connections_back_in_the_mode_it_lent_them(
    database_url: str, schema: str
) -> None:
    """Sends and reads run in autocommit on a pool connection, then restore its mode."""
    for autocommit in (False, True):
        async with AsyncConnectionPool(
            database_url, min_size=1, max_size=1, kwargs={"autocommit": autocommit}, open=False
        ) as pool:
            bus = CommandBus(pool, schema=schema)
            if not autocommit:
                await migrate(pool, schema=schema)
            command_id = uuid.uuid4()
            await bus.send("payments", "Charge", command_id, {})
            with pytest.raises(DuplicateCommandError):
                await bus.send("payments", "Charge", command_id, {})
            await bus.get_command("payments", command_id)
            await bus.query_commands()
            async with pool.connection() as conn:
                assert conn.autocommit is autocommit


@asynccontextmanager
async def _held_sends(
    database_url: str, schema: str
) -> AsyncIterator[tuple[CommandBus, AsyncConnection]]:
    """A bus on a one-connection pool whose sends wait at a table lock, and the connection
    holding that lock (``gate.rollback()`` releases it; the end of the block does too)."""
    async with (
        AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False) as pool,
        await AsyncConnection.connect(database_url) as gate,
    ):
        await gate.execute(
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(schema, "commands"))
        )
        try:
            yield CommandBus(pool, schema=schema), gate
        finally:
            await gate.rollback()
            await _wait_for_orphans(gate, schema)


async def _wait_for_orphans(conn: AsyncConnection, schema: str) -> None:
    """A statement orphaned by a cancellation may still run: return once none does."""
    while await _active_statements(conn, schema):
        await conn.rollback()  # pg_stat_activity is read once per transaction
        await anyio.sleep(0.01)


async def _active_statements(conn: AsyncConnection, schema: str) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE state = 'active' AND pid <> pg_backend_pid() AND position(%s in query) > 0",
        [f'"{schema}".commands'],
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def test_a_cancelled_send_writes_nothing_and_leaves_the_pool_connection_usable(
    database_url: str, schema: str, tables: Tables
) -> None:
    """asyncio cancellation: psycopg cancels the statement on the server."""
    async with _held_sends(database_url, schema) as (held, gate):
        task = asyncio.create_task(held.send("payments", "Charge", uuid.uuid4(), {}))
        await wait_for_lock_waiters(gate, schema, "commands", 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with held.pool.connection() as conn:
            assert not conn.autocommit
        await gate.rollback()
        assert await tables.counts() == {"commands": 0, "audit": 0}
        await held.send("payments", "Charge", uuid.uuid4(), {})
    assert await tables.counts() == {"commands": 1, "audit": 0}


async def test_a_send_cancelled_by_a_cancel_scope_is_all_or_nothing(
    database_url: str, schema: str, tables: Tables
) -> None:
    """anyio cancellation also interrupts psycopg's server-side cancel: the connection is
    dropped, and the orphaned statement may still commit, whole. Its outcome is unknown to
    the caller, as with any write whose reply is lost: resending the same command_id tells
    (DuplicateCommandError means it was sent)."""
    async with _held_sends(database_url, schema) as (held, gate):
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(held.send, "payments", "Charge", uuid.uuid4(), {})
                await wait_for_lock_waiters(gate, schema, "commands", 1)
                tg.cancel_scope.cancel()
        async with held.pool.connection() as conn:
            assert not conn.autocommit
        await gate.rollback()
        await _wait_for_orphans(gate, schema)
        await held.send("payments", "Charge", uuid.uuid4(), {})  # the pool still works

    counts = await tables.counts()
    assert counts["commands"] in (1, 2)
    assert counts["audit"] == 0
    # Whatever was written is whole: every command row is a deliverable message.
    rows = await tables.rows("commands", columns="status, vt <= now()")
    assert rows == [("PENDING", True)] * counts["commands"]


async def test_the_pools_row_and_cursor_factories_do_not_matter(
    database_url: str, schema: str
) -> None:
    kwargs = {"row_factory": dict_row, "cursor_factory": AsyncClientCursor}
    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=2, kwargs=kwargs, open=False
    ) as pool:
        await migrate(pool, schema=schema)
        bus = CommandBus(pool, schema=schema)
        command_id = uuid.uuid4()
        result = await bus.send("payments", "Charge", command_id, {"n": 1})
        with pytest.raises(DuplicateCommandError):
            await bus.send("payments", "Charge", command_id, {})
        cmd = await bus.get_command("payments", command_id)
        assert cmd is not None and cmd.data == {"n": 1}
        assert [c.command_id for c in await bus.query_commands()] == [command_id]
        (event,) = await bus.get_audit_trail(command_id)
        assert event.details == {"msg_id": result.msg_id}


async def test_enum_members_are_stored_as_their_values(bus: CommandBus) -> None:
    """A (str, Enum) formats as "Domain.ORDERS" on Python 3.11+; the value must be stored."""

    class Domain(str, Enum):  # noqa: UP042 - the case under test, not StrEnum
        ORDERS = "orders"

    class Kind(str, Enum):  # noqa: UP042
        SHIP = "Ship"

    class Attempts(int, Enum):
        FIVE = 5

    command_id = uuid.uuid4()
    result = await bus.send(Domain.ORDERS, Kind.SHIP, command_id, {}, max_attempts=Attempts.FIVE)
    assert result.command_id == command_id
    meta = await bus.get_command("orders", command_id)
    assert meta is not None
    assert (meta.domain, meta.command_type, meta.max_attempts) == ("orders", "Ship", 5)
