"""A unit of several statements: in the caller's transaction when given, else our own.

``_db.fetch_atomic`` covers one statement; batches and processes write several (a row of
their own, then the commands through the send statement) and need them atomic together.
The caller's connection is treated as ``fetch_atomic`` treats it: nothing is committed
here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from commandbus._errors import ValidationError

__all__ = ["transaction"]


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool, conn: AsyncConnection | None
) -> AsyncIterator[AsyncConnection]:
    """Yield a connection whose statements commit (or roll back) together.

    * no ``conn``: a pool connection in a transaction committed on exit;
    * ``conn`` in an open transaction: a savepoint, so a failure rolls back only our
      statements and the caller's transaction stays usable;
    * ``conn`` idle and not autocommit: our statements open the caller's transaction
      (psycopg's implicit BEGIN); the caller commits or rolls back;
    * ``conn`` in autocommit: a transaction of our own, committed on exit.
    """
    if conn is None:
        async with pool.connection() as own, own.transaction():
            yield own
        return
    if not isinstance(conn, AsyncConnection):
        raise ValidationError(
            "conn",
            f"must be a psycopg AsyncConnection, got {type(conn).__name__} "
            "(for a sync psycopg.Connection use commandbus_sync)",
        )
    if conn.autocommit or conn.info.transaction_status == TransactionStatus.INTRANS:
        async with conn.transaction():
            yield conn
        return
    yield conn
