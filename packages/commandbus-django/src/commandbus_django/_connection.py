"""Django's database, as commandbus needs it: Django's own psycopg connection (a task is
written in the caller's transaction), a connection string for pools of our own, and a
clear word when the database cannot work (not PostgreSQL, or psycopg2)."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connections
from psycopg.conninfo import make_conninfo

__all__ = ["callers_connection", "conninfo", "unsupported_reason"]

#: Keyword arguments of ``psycopg.connect`` that are not connection-string parameters.
_NOT_CONNINFO = {"context", "cursor_factory", "row_factory", "prepare_threshold", "autocommit"}


def unsupported_reason(alias: str) -> str | None:
    """Why ``alias`` cannot carry tasks, or None: it must be PostgreSQL on psycopg 3."""
    if alias not in connections.settings:
        return f"DATABASES has no {alias!r}"
    wrapper = connections[alias]
    if wrapper.vendor != "postgresql":
        return f"DATABASES[{alias!r}] is {wrapper.vendor}, and commandbus needs PostgreSQL"
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        return (
            f"DATABASES[{alias!r}] runs on psycopg2; commandbus writes tasks on Django's "
            "connection and needs psycopg 3 (pip install 'psycopg[binary]')"
        )
    return None


def callers_connection(alias: str) -> psycopg.Connection[Any]:
    """Django's open psycopg connection for ``alias``, in whatever transaction the caller
    is (``atomic()`` or autocommit)."""
    wrapper = connections[alias]
    wrapper.ensure_connection()
    conn = wrapper.connection
    assert isinstance(conn, psycopg.Connection), type(conn)
    return conn


def conninfo(alias: str) -> str:
    """A connection string to the same database, for connections of our own (result
    reads, workers, the console): what Django would connect with, libpq's part of it."""
    params = connections[alias].get_connection_params()
    kept = {
        key: str(value)
        for key, value in params.items()
        if key not in _NOT_CONNINFO and value is not None and not callable(value)
    }
    kept.setdefault("application_name", "commandbus-django")
    return make_conninfo(**kept)
