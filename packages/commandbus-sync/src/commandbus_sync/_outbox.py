"""The outbox on a caller's synchronous psycopg connection.

Sync apps (Django, Flask with psycopg) hold a ``psycopg.Connection`` in a transaction; the
command must be written on it, by the caller's thread, so it becomes visible exactly when
the caller commits. The statement is the core's own (:func:`commandbus._send.prepare_send`):
no SQL here. The transaction rule is the core's too (``commandbus._db.transaction``), for a
sync connection: nothing is committed on the caller's behalf.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from commandbus import SendResult, ValidationError
from commandbus._send import PreparedSend

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


def execute_send(conn: psycopg.Connection[Any], prepared: PreparedSend) -> list[SendResult]:
    """Run the prepared send inside the caller's transaction; on any error (a duplicate
    included) only our statement is rolled back. A plain server-side cursor with tuple rows,
    whatever the connection's factories, so both paths execute exactly alike."""
    with _in_callers_transaction(conn), psycopg.Cursor(conn, row_factory=tuple_row) as cur:
        cur.execute(prepared.query, prepared.params)
        return prepared.results(cur.fetchall())


@contextmanager
def _in_callers_transaction(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Autocommit: a transaction of our own. In a transaction: a savepoint. Idle and not
    autocommit (Django's ``atomic()`` before its first query): a savepoint whose implicit
    BEGIN opens the caller's transaction, which the caller ends (``conn.transaction()``
    would commit it on the spot)."""
    if conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        with conn.transaction():
            yield
        return
    conn.execute(b"SAVEPOINT commandbus")
    try:
        yield
    except BaseException:
        conn.execute(b"ROLLBACK TO SAVEPOINT commandbus")
        raise
    conn.execute(b"RELEASE SAVEPOINT commandbus")
