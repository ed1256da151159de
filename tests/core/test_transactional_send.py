"""``send(..., conn=c)`` joins the caller's transaction: the outbox pattern."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import AsyncClientCursor, AsyncConnection, sql
from psycopg.rows import dict_row

from commandbus import CommandBus, DuplicateCommandError, SendRequest, ValidationError
from core._tables import Tables


@pytest.fixture
async def conn(database_url: str, schema: str) -> AsyncIterator[AsyncConnection]:
    """The application's own connection, with an ``orders`` table of its own."""
    async with await AsyncConnection.connect(database_url) as conn:
        orders = sql.Identifier(schema, "orders")
        await conn.execute(sql.SQL("CREATE TABLE {} (id uuid PRIMARY KEY)").format(orders))
        await conn.commit()
        yield conn


async def _orders(conn: AsyncConnection, schema: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "orders"))
    cur = await conn.execute(query)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _place_order(conn: AsyncConnection, schema: str) -> uuid.UUID:
    order_id = uuid.uuid4()
    query = sql.SQL("INSERT INTO {} VALUES (%s)").format(sql.Identifier(schema, "orders"))
    await conn.execute(query, [order_id])
    return order_id


async def test_committed_send_becomes_visible_exactly_at_commit(
    bus: CommandBus, tables: Tables, conn: AsyncConnection, schema: str
) -> None:
    command_id = uuid.uuid4()
    async with conn.transaction():
        await _place_order(conn, schema)
        result = await bus.send("payments", "Charge", command_id, {}, conn=conn)

        # Other connections (the bus reads through its pool) do not see it yet...
        assert await bus.get_command("payments", command_id) is None
        assert await tables.counts() == {"commands": 0, "audit": 0}
        # ...while the caller's own transaction does.
        query = sql.SQL("SELECT msg_id, status FROM {} WHERE command_id = %s")
        cur = await conn.execute(query.format(sql.Identifier(schema, "commands")), [command_id])
        assert await cur.fetchall() == [(result.msg_id, "PENDING")]

    assert await bus.get_command("payments", command_id) is not None
    # Committed: one row, deliverable now; its SENT event is derived, not stored.
    assert await tables.rows("commands", command_id, columns="msg_id, status, vt <= now()") == [
        (result.msg_id, "PENDING", True)
    ]
    assert await tables.count("audit", command_id) == 0
    trail = await bus.get_audit_trail(command_id)
    assert [(e.event_type, e.details) for e in trail] == [("SENT", {"msg_id": result.msg_id})]


async def test_rolled_back_send_leaves_no_trace(
    bus: CommandBus, tables: Tables, conn: AsyncConnection, schema: str
) -> None:
    command_id = uuid.uuid4()
    async with conn.transaction():
        await _place_order(conn, schema)
        await bus.send("payments", "Charge", command_id, {}, conn=conn)
        raise psycopg.Rollback

    assert await _orders(conn, schema) == 0
    assert await bus.get_command("payments", command_id) is None
    assert await tables.counts() == {"commands": 0, "audit": 0}
    # The id was never used, so it can be sent now.
    await bus.send("payments", "Charge", command_id, {})


async def test_an_exception_in_the_callers_block_rolls_the_send_back(
    bus: CommandBus, tables: Tables, conn: AsyncConnection
) -> None:
    with pytest.raises(RuntimeError, match="business failure"):
        async with conn.transaction():
            await bus.send("payments", "Charge", uuid.uuid4(), {}, conn=conn)
            raise RuntimeError("business failure")

    assert await tables.counts() == {"commands": 0, "audit": 0}


async def test_send_batch_joins_the_callers_transaction_too(
    bus: CommandBus, tables: Tables, conn: AsyncConnection
) -> None:
    requests = [SendRequest("payments", "Charge", uuid.uuid4(), {}) for _ in range(3)]
    async with conn.transaction():
        await bus.send_batch(requests, conn=conn)
        raise psycopg.Rollback
    assert await tables.counts() == {"commands": 0, "audit": 0}

    async with conn.transaction():
        await bus.send_batch(requests, conn=conn)
        assert await tables.count("commands") == 0
    assert await tables.count("commands") == 3


async def test_the_callers_transaction_stays_usable_after_a_duplicate_inside_it(
    bus: CommandBus, tables: Tables, conn: AsyncConnection, schema: str
) -> None:
    taken = uuid.uuid4()
    await bus.send("payments", "Charge", taken, {"v": "original"})
    fresh = uuid.uuid4()

    async with conn.transaction():
        await _place_order(conn, schema)
        with pytest.raises(DuplicateCommandError):
            await bus.send("payments", "Charge", taken, {"v": "again"}, conn=conn)
        # Still usable: more work, another send, then commit.
        await _place_order(conn, schema)
        await bus.send("payments", "Charge", fresh, {}, conn=conn)

    assert await _orders(conn, schema) == 2
    original = await bus.get_command("payments", taken)
    assert original is not None and original.data == {"v": "original"}
    assert await bus.get_command("payments", fresh) is not None
    assert await tables.counts() == {"commands": 2, "audit": 0}


async def test_a_rejected_batch_inside_a_transaction_keeps_the_callers_earlier_work(
    bus: CommandBus, tables: Tables, conn: AsyncConnection, schema: str
) -> None:
    taken = uuid.uuid4()
    await bus.send("payments", "Charge", taken, {})
    batch = [
        SendRequest("payments", "Charge", uuid.uuid4(), {}),
        SendRequest("payments", "Charge", taken, {}),
    ]

    async with conn.transaction():
        await _place_order(conn, schema)
        await bus.send("payments", "Charge", uuid.uuid4(), {}, conn=conn)
        with pytest.raises(DuplicateCommandError):
            await bus.send_batch(batch, conn=conn)

    assert await _orders(conn, schema) == 1
    assert await tables.counts() == {"commands": 2, "audit": 0}
    assert await bus.get_command("payments", batch[0].command_id) is None


async def test_send_on_a_connection_with_no_statement_yet_joins_its_implicit_transaction(
    bus: CommandBus, tables: Tables, conn: AsyncConnection, schema: str
) -> None:
    """psycopg's default: the first statement opens a transaction that the caller ends."""
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {}, conn=conn)
    await _place_order(conn, schema)
    assert await bus.get_command("payments", command_id) is None
    await conn.rollback()

    assert await _orders(conn, schema) == 0
    assert await tables.counts() == {"commands": 0, "audit": 0}

    await bus.send("payments", "Charge", command_id, {}, conn=conn)
    assert await bus.get_command("payments", command_id) is None
    await conn.commit()
    assert await bus.get_command("payments", command_id) is not None


async def test_a_duplicate_as_first_statement_leaves_the_implicit_transaction_usable(
    bus: CommandBus, tables: Tables, conn: AsyncConnection, schema: str
) -> None:
    taken = uuid.uuid4()
    await bus.send("payments", "Charge", taken, {})

    with pytest.raises(DuplicateCommandError):
        await bus.send("payments", "Charge", taken, {}, conn=conn)
    await _place_order(conn, schema)
    await conn.commit()

    assert await _orders(conn, schema) == 1
    assert await tables.counts() == {"commands": 1, "audit": 0}


async def test_send_on_an_autocommit_connection_commits_at_once(
    bus: CommandBus, database_url: str
) -> None:
    command_id = uuid.uuid4()
    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        await bus.send("payments", "Charge", command_id, {}, conn=conn)
        assert await bus.get_command("payments", command_id) is not None


async def test_a_sync_connection_is_refused_with_a_pointer_to_the_sync_bus(
    bus: CommandBus, tables: Tables, database_url: str
) -> None:
    with psycopg.connect(database_url) as sync_conn, pytest.raises(ValidationError) as caught:
        await bus.send("payments", "Charge", uuid.uuid4(), {}, conn=sync_conn)  # type: ignore[arg-type]
    assert caught.value.field == "conn"
    assert "SyncCommandBus" in str(caught.value)
    assert await tables.counts() == {"commands": 0, "audit": 0}


async def test_the_callers_row_and_cursor_factories_do_not_matter(
    bus: CommandBus, tables: Tables, database_url: str
) -> None:
    """Applications often open connections with dict rows or client-side cursors."""
    async with (
        await AsyncConnection.connect(
            database_url, row_factory=dict_row, cursor_factory=AsyncClientCursor
        ) as conn,
        conn.transaction(),
    ):
        result = await bus.send("payments", "Charge", uuid.uuid4(), {}, conn=conn)
        with pytest.raises(DuplicateCommandError):
            await bus.send("payments", "Charge", result.command_id, {}, conn=conn)
        await bus.send_batch([SendRequest("payments", "Charge", uuid.uuid4(), {})], conn=conn)
    assert await tables.counts() == {"commands": 2, "audit": 0}
