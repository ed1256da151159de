"""Helpers for testing applications built on commandbus (and for commandbus's own tests).

* a throwaway PostgreSQL server: :func:`postgres_server`;
* a migrated template database and a clone of it per test: :class:`DatabaseTemplate`;
* :func:`wait_for_command`, :func:`drain` and :func:`make_context` for handler tests;
* :func:`inline` / :class:`InlineRunner`: run handlers in the test's process as soon as a
  command sent is committed;
* the pytest plugin (:mod:`commandbus.testing.plugin`, loaded by pytest on its own):
  ``commandbus_pool``, ``commandbus_bus``, ``commandbus_sync_runtime`` and friends, each
  test on a database of its own.

Blocking twins for ``SyncCommandBus`` are in ``commandbus_sync.testing``.
"""

from commandbus.testing.databases import DatabaseTemplate
from commandbus.testing.helpers import (
    CommandNotReachedError,
    drain,
    make_context,
    wait_for_command,
)
from commandbus.testing.inline import InlineRunner, inline
from commandbus.testing.postgres import (
    PostgresNotAvailableError,
    PostgresServer,
    find_server_binaries,
    postgres_server,
    start_postgres,
)

__all__ = [
    "CommandNotReachedError",
    "DatabaseTemplate",
    "InlineRunner",
    "PostgresNotAvailableError",
    "PostgresServer",
    "drain",
    "find_server_binaries",
    "inline",
    "make_context",
    "postgres_server",
    "start_postgres",
    "wait_for_command",
]
