"""The pool connection an async handler gets as ``ctx.conn``, and how it goes back.

``ctx.conn`` is a :class:`HandlerConnection`: it takes a pool connection at the
handler's first statement, not before. A handler that never runs a statement on it costs
no checkout (its outcome is recorded in a batch), and one that does gets its writes
committed with the outcome. Either way the handler runs once per attempt.

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
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncTransaction
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from commandbus._errors import InvalidOperationError

__all__ = ["HandlerConnection", "LentConnection", "lent_to_handler"]

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


class HandlerConnection:
    """``ctx.conn``: the handler's transaction, taken from the pool at its first use.

    It stands in for the ``AsyncConnection``: ``execute``, ``cursor``, ``transaction``
    and ``pipeline`` take the connection first, then act on it; ``await ctx.conn`` (or
    ``await ctx.connection()``) gives the connection itself, for code that needs the real
    object. Attributes read before the first statement (``ctx.conn.info``) need the
    connection taken first: the error says so.
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._lending: AbstractAsyncContextManager[LentConnection] | None = None
        self._lent: LentConnection | None = None
        self._taking: asyncio.Lock | None = None
        self._closed = False

    @property
    def lent(self) -> LentConnection | None:
        """The connection taken and how it was used, or None if the handler took none."""
        return self._lent

    async def connection(self) -> AsyncConnection:
        """The pool connection, taken now if the handler has not taken it yet."""
        if self._lent is not None:
            return self._lent.conn
        if self._taking is None:
            self._taking = asyncio.Lock()  # two statements started at once: one checkout
        async with self._taking:
            if self._lent is None:
                if self._closed:
                    raise InvalidOperationError(
                        "ctx.conn is used after its handler returned: the attempt's "
                        "transaction has ended"
                    )
                lending = lent_to_handler(self._pool)
                self._lent = await lending.__aenter__()
                self._lending = lending
        return self._lent.conn

    async def give_back(self) -> None:
        """End of the attempt: the connection (if taken) goes back to the pool."""
        self._closed = True
        lending, self._lending, self._lent = self._lending, None, None
        if lending is not None:
            await lending.__aexit__(None, None, None)

    def __await__(self) -> Generator[Any, None, AsyncConnection]:
        return self.connection().__await__()

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        conn = await self.connection()
        return await conn.execute(*args, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        if self._lent is not None:
            return self._lent.conn.cursor(*args, **kwargs)
        return _LazyCursor(self, args, kwargs)

    @asynccontextmanager
    async def transaction(self, *args: Any, **kwargs: Any) -> AsyncIterator[AsyncTransaction]:
        conn = await self.connection()
        async with conn.transaction(*args, **kwargs) as tx:
            yield tx

    @asynccontextmanager
    async def pipeline(self) -> AsyncIterator[Any]:
        conn = await self.connection()
        async with conn.pipeline() as pipeline:
            yield pipeline

    async def commit(self) -> None:
        if self._lent is not None:  # nothing taken: nothing to commit
            await self._lent.conn.commit()

    async def rollback(self) -> None:
        if self._lent is not None:
            await self._lent.conn.rollback()

    def __getattr__(self, name: str) -> Any:
        lent = self.__dict__.get("_lent")
        if lent is not None:
            return getattr(lent.conn, name)
        raise InvalidOperationError(
            f"ctx.conn.{name}: ctx.conn is taken from the pool at its first statement, "
            "and this handler has run none yet; `conn = await ctx.connection()` takes it now"
        )


class _LazyCursor:
    """``ctx.conn.cursor()`` before the connection is taken: the real cursor is made at
    its first use (``async with``, ``execute``, ``executemany``, ``copy``, ``stream``)."""

    def __init__(self, owner: HandlerConnection, args: tuple[Any, ...], kwargs: dict[str, Any]):
        self._owner = owner
        self._args = args
        self._kwargs = kwargs
        self._cursor: Any = None

    async def _real(self) -> Any:
        if self._cursor is None:
            conn = await self._owner.connection()
            self._cursor = conn.cursor(*self._args, **self._kwargs)
        return self._cursor

    async def __aenter__(self) -> Any:
        cursor = await self._real()
        return await cursor.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        if self._cursor is not None:
            return await self._cursor.__aexit__(*exc)
        return None

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await (await self._real()).execute(*args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> None:
        await (await self._real()).executemany(*args, **kwargs)

    @asynccontextmanager
    async def copy(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with (await self._real()).copy(*args, **kwargs) as copy:
            yield copy

    async def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for row in (await self._real()).stream(*args, **kwargs):
            yield row

    def __getattr__(self, name: str) -> Any:
        cursor = self.__dict__.get("_cursor")
        if cursor is not None:
            return getattr(cursor, name)
        raise InvalidOperationError(
            f"cursor.{name} before the cursor ran a statement: ctx.conn is taken from the "
            "pool at its first statement"
        )
