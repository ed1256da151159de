"""The lease statement: one round trip that commits every lease it takes, or none.

The worker sends its lease settings and the dequeue in one pipeline on an autocommit
connection; PostgreSQL runs the statements before the pipeline's sync as one implicit
transaction. These tests pin down what that must mean for users: the leases commit, the
settings do not leak into the application's pooled connection, and a failure leases
nothing.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, CommandStatus, HandlerRegistry, migrate
from core.helpers import DOMAIN, make_worker


@pytest.fixture
async def one_connection_pool(database_url: str, schema: str) -> AsyncConnectionPool:
    """A pool of exactly one connection, so the test sees the connection the worker used."""
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False)
    await pool.open()
    await migrate(pool, schema=schema)
    yield pool  # type: ignore[misc]
    await pool.close()


async def _lease_state(
    database_url: str, schema: str, command_id: uuid.UUID
) -> tuple[int | None, int, bool]:
    """(lease_id, attempts, deliverable now) of the command's row, read from another
    connection. The row is the queue: while it is leased, ``vt`` is its lease's expiry."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            sql.SQL(
                "SELECT lease_id, attempts, status = 'PENDING' AND vt <= now() "
                "FROM {}.commands WHERE command_id = %s"
            ).format(sql.Identifier(schema)),
            (command_id,),
        )
        rows = await cur.fetchall()
    assert len(rows) == 1
    return rows[0]


async def _on_lease(pool: AsyncConnectionPool, schema: str, setup: str, body: str) -> None:
    """Run ``body`` (plpgsql) inside the dequeue statement: on each command row it leases."""
    async with pool.connection() as conn:
        await conn.execute(
            sql.SQL(
                setup + "CREATE FUNCTION {s}.on_lease() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN " + body + " END$$; "
                "CREATE TRIGGER on_lease BEFORE UPDATE ON {s}.commands FOR EACH ROW "
                "WHEN (NEW.lease_id IS DISTINCT FROM OLD.lease_id AND NEW.status = 'IN_PROGRESS') "
                "EXECUTE FUNCTION {s}.on_lease()"
            ).format(s=sql.Identifier(schema))
        )


async def _assert_idle_with_default_settings(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:  # the only one: the worker's
        assert conn.info.transaction_status == TransactionStatus.IDLE
        cur = await conn.execute("SHOW enable_bitmapscan")
        assert await cur.fetchone() == ("on",)


async def test_a_lease_commits_and_its_settings_stay_out_of_the_pooled_connection(
    one_connection_pool: AsyncConnectionPool, database_url: str, schema: str
) -> None:
    pool = one_connection_pool
    bus = CommandBus(pool, schema=schema)
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Noop", command_id, {})
    await _on_lease(  # note what the dequeue statement itself runs under
        pool,
        schema,
        "CREATE TABLE {s}.seen (bitmapscan text); ",
        "INSERT INTO {s}.seen VALUES (current_setting('enable_bitmapscan')); RETURN NEW;",
    )
    worker = make_worker(pool, schema, HandlerRegistry())

    leases, _ = await worker._fetcher.lease("dequeue", 5, alone=True)

    assert [lease.command.command_id for lease in leases] == [command_id]
    async with pool.connection() as conn:  # the settings held inside the dequeue
        cur = await conn.execute(sql.SQL("SELECT * FROM {}.seen").format(sql.Identifier(schema)))
        assert await cur.fetchall() == [("off",)]
    # Committed: another connection sees the lease (its id, one attempt, not deliverable).
    assert await _lease_state(database_url, schema, command_id) == (leases[0].lease_id, 1, False)
    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and meta.status == CommandStatus.IN_PROGRESS
    async with pool.connection() as conn:  # the only one: the worker's
        assert conn.autocommit is False
    await _assert_idle_with_default_settings(pool)


async def test_a_failed_dequeue_leases_nothing_and_leaves_the_connection_usable(
    one_connection_pool: AsyncConnectionPool, database_url: str, schema: str
) -> None:
    pool = one_connection_pool
    bus = CommandBus(pool, schema=schema)
    command_ids = [uuid.uuid4(), uuid.uuid4()]
    for command_id in command_ids:
        await bus.send(DOMAIN, "Noop", command_id, {})
    # Leasing the first row goes through, leasing the second fails: the lease of the
    # first must be undone too.
    await _on_lease(
        pool,
        schema,
        "CREATE SEQUENCE {s}.leasing; ",
        "IF nextval('{s}.leasing') > 1 THEN RAISE EXCEPTION 'lease refused'; END IF; RETURN NEW;",
    )
    worker = make_worker(pool, schema, HandlerRegistry())

    with pytest.raises(psycopg.errors.RaiseException, match="lease refused"):
        await worker._fetcher.lease("dequeue", 5, alone=True)

    for command_id in command_ids:
        assert await _lease_state(database_url, schema, command_id) == (None, 0, True)
        meta = await bus.get_command(DOMAIN, command_id)
        assert meta is not None and meta.status == CommandStatus.PENDING and meta.attempts == 0
    await _assert_idle_with_default_settings(pool)
