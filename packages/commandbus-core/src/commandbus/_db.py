"""Connection plumbing: use the caller's transaction when given, else one from the pool."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from commandbus._errors import ValidationError
from commandbus._handler_conn import HandlerConnection

__all__ = [
    "RELEASE_SAVEPOINT",
    "ROLLBACK_TO_SAVEPOINT",
    "SAVEPOINT",
    "autocommit_connection",
    "execute",
    "fetch",
    "fetch_all",
    "fetch_one",
    "needs_explicit_savepoint",
    "transaction",
    "tuple_cursor",
]

SAVEPOINT = b"SAVEPOINT commandbus"
ROLLBACK_TO_SAVEPOINT = b"ROLLBACK TO SAVEPOINT commandbus"
RELEASE_SAVEPOINT = b"RELEASE SAVEPOINT commandbus"


def needs_explicit_savepoint(autocommit: bool, status: TransactionStatus) -> bool:
    """Whether work on a caller's connection must be wrapped in a bare savepoint.

    On an autocommit connection, or inside an open transaction, the driver's own
    ``conn.transaction()`` is right (a transaction of ours, or a savepoint). On a
    non-autocommit connection with no transaction open yet (Django's ``atomic()`` before
    its first query), ``conn.transaction()`` would BEGIN and COMMIT on the spot; a bare
    SAVEPOINT instead lets the driver's implicit BEGIN open the *caller's* transaction,
    which the caller ends. One rule for the async and the sync (``commandbus_sync``) path.
    """
    return not autocommit and status == TransactionStatus.IDLE


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool, conn: AsyncConnection | None
) -> AsyncIterator[AsyncConnection]:
    """A transaction on a pool connection, or a savepoint in the caller's transaction.

    With the caller's ``conn`` nothing is committed here: the work becomes visible when
    the caller commits, and a failure rolls back only our savepoint, leaving the caller's
    transaction usable (see :func:`needs_explicit_savepoint`). On an autocommit
    connection the work commits at the end of the block.
    """
    if conn is None:
        async with pool.connection() as own, own.transaction():
            yield own
        return
    if isinstance(conn, HandlerConnection):  # ctx.conn: taken now, if not yet
        conn = await conn.connection()
    if not isinstance(conn, AsyncConnection):
        raise ValidationError(
            "conn",
            f"must be a psycopg AsyncConnection, got {type(conn).__name__} "
            "(for a sync psycopg.Connection use commandbus_sync.SyncCommandBus)",
        )
    if not needs_explicit_savepoint(conn.autocommit, conn.info.transaction_status):
        async with conn.transaction():
            yield conn
        return
    await conn.execute(SAVEPOINT)  # preceded by psycopg's implicit BEGIN
    try:
        yield conn
    except BaseException:
        # Keep the original error if the connection is past saving (as psycopg does).
        with contextlib.suppress(psycopg.Error):
            await conn.execute(ROLLBACK_TO_SAVEPOINT)
        raise
    await conn.execute(RELEASE_SAVEPOINT)


@asynccontextmanager
async def autocommit_connection(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection]:
    """A pool connection in autocommit mode: each statement is its own transaction.

    For work that is one statement, this is one round trip instead of three (BEGIN,
    statement, COMMIT). The pool gets the connection back in the mode it lent it.
    ``getconn``/``putconn`` rather than ``pool.connection()``: in autocommit there is no
    transaction for its exit to commit, and its commit step costs on every send, lease
    and outcome batch. ``putconn`` still rolls back or discards a connection left
    mid-transaction or mid-query.
    """
    conn = await pool.getconn()
    try:
        if conn.autocommit:
            yield conn
            return
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            try:
                await conn.set_autocommit(False)  # no I/O on an idle connection
            except psycopg.Error:
                # Not idle (e.g. cancelled mid-query): the pool must not reuse it as it is.
                await conn.close()
    finally:
        await pool.putconn(conn)


async def fetch(pool: AsyncConnectionPool, query: bytes, params: Any) -> list[tuple[Any, ...]]:
    """Rows of one read-only statement, in autocommit on a pool connection."""
    async with autocommit_connection(pool) as conn:
        return await fetch_all(conn, query, params)


def tuple_cursor(conn: AsyncConnection[Any]) -> AsyncCursor[tuple[Any, ...]]:
    """The cursor for every statement of ours with parameters: tuple rows and server-side
    binding, whatever row and cursor factories the application gave its connections
    (dict rows, or client-side cursors that cannot bind our binary parameters)."""
    return AsyncCursor(conn, row_factory=tuple_row)


async def fetch_all(conn: AsyncConnection, query: bytes, params: Any) -> list[tuple[Any, ...]]:
    """Execute on a :func:`tuple_cursor` and return all rows (none for a statement
    without a result)."""
    async with tuple_cursor(conn) as cur:
        await cur.execute(query, params)
        return await cur.fetchall() if cur.description is not None else []


async def fetch_one(conn: AsyncConnection, query: bytes, params: Any) -> tuple[Any, ...] | None:
    """Execute on a :func:`tuple_cursor` and return the first row, or None."""
    async with tuple_cursor(conn) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def execute(conn: AsyncConnection, query: bytes, params: Any) -> None:
    """Execute a statement whose result is not read, on a :func:`tuple_cursor`."""
    async with tuple_cursor(conn) as cur:
        await cur.execute(query, params)
