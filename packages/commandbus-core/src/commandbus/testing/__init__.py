"""Helpers for testing applications built on commandbus (and for commandbus's own tests)."""

from commandbus.testing.postgres import (
    PostgresNotAvailableError,
    PostgresServer,
    find_server_binaries,
    postgres_server,
    start_postgres,
)

__all__ = [
    "PostgresNotAvailableError",
    "PostgresServer",
    "find_server_binaries",
    "postgres_server",
    "start_postgres",
]
