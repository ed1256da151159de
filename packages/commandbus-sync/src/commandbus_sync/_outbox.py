"""The outbox on a caller's synchronous psycopg connection.

Sync apps (Django, Flask with psycopg) hold a ``psycopg.Connection`` in a transaction; the
command must be written on it, by the caller's thread, so it becomes visible exactly when
the caller commits. The statement is the core's own (:func:`commandbus._send.prepare_send`):
no SQL here. The transaction rule is the core's too
(:func:`commandbus._db.needs_explicit_savepoint`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from commandbus import SendResult, ValidationError
from commandbus._db import (
    RELEASE_SAVEPOINT,
    ROLLBACK_TO_SAVEPOINT,
    SAVEPOINT,
    needs_explicit_savepoint,
)
from commandbus._send import PreparedSend
from commandbus.hooks import Hooks

__all__ = ["check_connection", "execute_send"]


def check_connection(conn: object) -> psycopg.Connection[Any]:
    if isinstance(conn, psycopg.AsyncConnection):
        raise ValidationError(
            "conn",
            "is a psycopg AsyncConnection, which belongs to the event loop it was opened on; "
            "in async code use `await CommandBus.send(..., conn=conn)`, in sync code pass a "
            "psycopg.Connection (Django: django.db.connection.connection)",
        )
    if not isinstance(conn, psycopg.Connection):
        raise ValidationError("conn", f"must be a psycopg.Connection, got {type(conn).__name__}")
    return conn


def execute_send(
    conn: psycopg.Connection[Any], prepared: PreparedSend, hooks: Hooks
) -> list[SendResult]:
    """Run the prepared send (its prelude first) inside the caller's transaction; on any
    error (a duplicate included) only our statements are rolled back. A plain cursor with
    tuple rows, whatever the connection's factories, so both paths execute exactly alike.
    The bus's middleware wraps it here, in the caller's thread and trace context."""
    with (
        prepared.wrapped(hooks) as wrapped,
        _in_callers_transaction(conn),
        psycopg.Cursor(conn, row_factory=tuple_row) as cur,
    ):
        for query, params in wrapped.prelude:
            cur.execute(query, params)
        cur.execute(wrapped.query, wrapped.params)
        return wrapped.results(cur.fetchall())


@contextmanager
def _in_callers_transaction(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """The core's rule (:func:`commandbus._db.needs_explicit_savepoint`) on a sync
    connection: nothing is committed on the caller's behalf."""
    if not needs_explicit_savepoint(conn.autocommit, conn.info.transaction_status):
        with conn.transaction():
            yield
        return
    conn.execute(SAVEPOINT)
    try:
        yield
    except BaseException:
        with suppress(psycopg.Error):  # keep the original error if the conn is past saving
            conn.execute(ROLLBACK_TO_SAVEPOINT)
        raise
    conn.execute(RELEASE_SAVEPOINT)
