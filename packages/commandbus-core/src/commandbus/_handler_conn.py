"""The pool connection an async handler gets as ``ctx.conn``, and how it goes back.

Whatever the application's pool settings, the handler's statements must join one
transaction that the worker ends together with the command's outcome. So, while lent:

* autocommit is off (an ``autocommit=True`` pool would commit each statement at once);
* ``ctx.conn.transaction()`` joins that transaction as a savepoint, even as the handler's
  first statement (psycopg would otherwise BEGIN and COMMIT it on its own, before the
  outcome exists);
* a ``commit()`` by the handler itself, which nothing can undo, is noted (the worker
  warns about it).

The connection goes back as it was lent: no transaction open, its autocommit mode, no
shim; one that cannot be restored is closed, so the pool replaces it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncTransaction
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

__all__ = ["LentConnection", "lent_to_handler"]

_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR)
#: The longest a handler's leftover transaction may take to roll back before its
#: connection is closed instead.
_ROLLBACK_GRACE_S = 2.0
# Run when the handler opens transaction() first: psycopg begins our transaction with it.
_BEGIN_OURS = b"SELECT 1"

TransactionFactory = Callable[..., AbstractAsyncContextManager[AsyncTransaction]]
_SHIMS = ("transaction", "commit")


@dataclass
class LentConnection:
    conn: AsyncConnection
    #: The handler called ``conn.commit()`` itself: its writes did not wait for the outcome.
    handler_committed: bool = False


@asynccontextmanager
async def lent_to_handler(pool: AsyncConnectionPool) -> AsyncIterator[LentConnection]:
    conn = await pool.getconn()
    lent = LentConnection(conn)
    lent_in_autocommit = conn.autocommit
    try:
        if lent_in_autocommit:
            await conn.set_autocommit(False)  # no I/O on an idle connection
        conn.transaction = _joining_transaction(conn)  # type: ignore[method-assign,assignment]
        conn.commit = _noting_commit(lent)  # type: ignore[method-assign]
        yield lent
    finally:
        try:
            for name in _SHIMS:
                conn.__dict__.pop(name, None)
            if conn.info.transaction_status in _OPEN:  # cancelled mid-handler
                try:  # bounded: on a silent server a rollback would wait for ever
                    await asyncio.wait_for(conn.rollback(), _ROLLBACK_GRACE_S)
                except (psycopg.Error, TimeoutError):
                    await conn.close()  # the pool replaces a closed connection
            if lent_in_autocommit:
                await _restore_autocommit(conn)
        finally:  # even if cancelled again during the rollback
            await pool.putconn(conn)


def _joining_transaction(conn: AsyncConnection) -> TransactionFactory:
    """``conn.transaction()`` that is always a savepoint in the worker's transaction."""
    own = type(conn).transaction

    @asynccontextmanager
    async def transaction(
        savepoint_name: str | None = None, force_rollback: bool = False
    ) -> AsyncIterator[AsyncTransaction]:
        if conn.info.transaction_status == TransactionStatus.IDLE:
            await conn.execute(_BEGIN_OURS)
        async with own(conn, savepoint_name, force_rollback) as tx:
            yield tx

    return transaction


def _noting_commit(lent: LentConnection) -> Callable[[], Coroutine[Any, Any, None]]:
    async def commit() -> None:
        lent.handler_committed = True
        await AsyncConnection.commit(lent.conn)

    return commit


async def _restore_autocommit(conn: AsyncConnection) -> None:
    try:
        await conn.set_autocommit(True)
    except psycopg.Error:
        await conn.close()
