"""The synchronous connection a plain-``def`` handler gets as ``ctx.sync_conn``.

A plain handler runs in a thread, where the worker's ``AsyncConnection`` cannot be used.
So the worker keeps a small synchronous pool beside its async one, to the same server
with the same connection settings, opened on first use (a worker whose handlers never
ask for ``ctx.sync_conn`` opens no connection for it) and holding at most one
connection per handler thread. The handler's statements run in a transaction that the
worker ends together with the command's outcome, in the handler's thread, exactly as
``ctx.conn`` does for async handlers (see :mod:`commandbus._handler_conn`).
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable
from typing import Any, cast

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from commandbus._errors import ConfigurationError

__all__ = ["SyncHandlerConnections"]

_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR)
_BEGIN = b"SELECT 1"


class SyncHandlerConnections:
    """Lends synchronous connections to plain-``def`` handlers, in their own threads."""

    def __init__(self, pool: AsyncConnectionPool, size: int, name: str) -> None:
        self._conninfo = pool.conninfo
        self._kwargs = pool.kwargs
        self._size = size
        self._name = name
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()

    @property
    def opened(self) -> bool:
        return self._pool is not None

    def lend(self) -> psycopg.Connection[Any]:
        """A connection in an open transaction, for the calling handler thread."""
        with self._lock:
            if self._pool is None:
                conninfo, kwargs = self._conninfo, self._kwargs
                if inspect.iscoroutinefunction(conninfo) or inspect.iscoroutinefunction(kwargs):
                    raise ConfigurationError(
                        "ctx.sync_conn needs the pool's conninfo and kwargs as values or "
                        "plain callables: an async callable cannot serve a handler thread"
                    )
                self._pool = ConnectionPool(
                    cast("str | Callable[[], str]", conninfo),
                    kwargs=cast("dict[str, Any] | Callable[[], dict[str, Any]]", kwargs),
                    min_size=0,
                    max_size=self._size,
                    name=self._name,
                    open=True,
                )
            pool = self._pool
        conn = pool.getconn()
        try:
            if conn.autocommit:
                conn.autocommit = False
            # Begin the worker's transaction now: the handler's own transaction() blocks
            # then nest in it as savepoints instead of committing on their own.
            conn.execute(_BEGIN)
        except BaseException:
            self.give_back(conn)
            raise
        return conn

    def give_back(self, conn: psycopg.Connection[Any]) -> None:
        """Back to the pool with no transaction open and the pool's autocommit mode."""
        assert self._pool is not None
        try:
            if conn.info.transaction_status in _OPEN:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
            kwargs = self._kwargs() if callable(self._kwargs) else self._kwargs
            wanted = bool(isinstance(kwargs, dict) and kwargs.get("autocommit", False))
            if conn.autocommit != wanted and not conn.closed:
                try:
                    conn.autocommit = wanted
                except psycopg.Error:
                    conn.close()
        finally:
            self._pool.putconn(conn)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
