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

__all__ = ["autocommit_connection", "fetch", "fetch_all", "transaction"]


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool, conn: AsyncConnection | None
) -> AsyncIterator[AsyncConnection]:
    """A transaction on a pool connection, or a savepoint in the caller's transaction.

    With the caller's ``conn`` nothing is committed here: the work becomes visible when
    the caller commits, and a failure rolls back only our savepoint, leaving the caller's
    transaction usable. On a non-autocommit connection with no transaction open yet, our
    first statement opens the caller's transaction (psycopg's implicit BEGIN), which the
    caller then ends; ``conn.transaction()`` would have committed it on the spot. On an
    autocommit connection the work commits at the end of the block.
    """
    if conn is None:
        async with pool.connection() as own, own.transaction():
            yield own
        return
    if not isinstance(conn, AsyncConnection):
        raise ValidationError(
            "conn",
            f"must be a psycopg AsyncConnection, got {type(conn).__name__} "
            "(for a sync psycopg.Connection use commandbus_sync.SyncCommandBus)",
        )
    if conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        async with conn.transaction():
            yield conn
        return
    await conn.execute(b"SAVEPOINT commandbus")  # preceded by psycopg's implicit BEGIN
    try:
        yield conn
    except BaseException:
        # Keep the original error if the connection is past saving (as psycopg does).
        with contextlib.suppress(psycopg.Error):
            await conn.execute(b"ROLLBACK TO SAVEPOINT commandbus")
        raise
    await conn.execute(b"RELEASE SAVEPOINT commandbus")


@asynccontextmanager
async def autocommit_connection(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection]:
    """A pool connection in autocommit mode: each statement is its own transaction.

    For work that is one statement, this is one round trip instead of three (BEGIN,
    statement, COMMIT). The pool gets the connection back in the mode it lent it.
    """
    async with pool.connection() as conn:
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


async def fetch(pool: AsyncConnectionPool, query: bytes, params: Any) -> list[tuple[Any, ...]]:
    """Rows of one read-only statement, in autocommit on a pool connection."""
    async with autocommit_connection(pool) as conn:
        return await fetch_all(conn, query, params)


async def fetch_all(conn: AsyncConnection, query: bytes, params: Any) -> list[tuple[Any, ...]]:
    """Execute and return the rows as tuples, whatever the connection's row and cursor
    factories (applications use dict rows, or client-side cursors that cannot bind the
    binary parameters our statements use)."""
    async with AsyncCursor(conn, row_factory=tuple_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall() if cur.description is not None else []
