"""Connection plumbing: use the caller's transaction when given, else one from the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus._errors import ValidationError

__all__ = ["transaction"]


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool, conn: AsyncConnection | None
) -> AsyncIterator[AsyncConnection]:
    """A transaction on ``conn`` (a savepoint if the caller has one open) or on a pool connection.

    With the caller's connection, nothing is committed here: the work becomes visible
    when the caller commits, and a failure rolls back only our savepoint.
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
    async with conn.transaction():
        yield conn
