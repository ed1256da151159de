"""Connection plumbing: use the caller's transaction when given, else one from the pool."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from commandbus._errors import ValidationError

__all__ = ["fetch", "transaction"]


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


async def fetch(pool: AsyncConnectionPool, query: bytes, params: Any) -> list[tuple[Any, ...]]:
    """Rows of one read-only statement, on a pool connection in autocommit mode.

    One round trip instead of three (BEGIN, statement, COMMIT) for a consistent read.
    """
    async with pool.connection() as conn, _autocommit(conn):
        cur = await conn.execute(query, params)
        return await cur.fetchall()


@asynccontextmanager
async def _autocommit(conn: AsyncConnection) -> AsyncIterator[None]:
    """Autocommit for the duration; the pool gets the connection back in the mode it lent it."""
    if conn.autocommit:
        yield
        return
    await conn.set_autocommit(True)
    try:
        yield
    finally:
        try:
            await conn.set_autocommit(False)  # no I/O on an idle connection
        except psycopg.Error:
            # Not idle (e.g. cancelled mid-query): the pool must not reuse it in autocommit.
            await conn.close()
