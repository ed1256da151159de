"""The commandbus pytest plugin, loaded by pytest through the ``pytest11`` entry point of
``commandbus-core``. It only defines fixtures: nothing starts, connects or imports
further until a test asks for one of them.

Fixtures (every name starts with ``commandbus_``):

``commandbus_database_url`` (session)
    The server: ``DATABASE_URL`` if set, else a throwaway cluster from the local
    PostgreSQL binaries, stopped after the session (see :mod:`commandbus.testing.postgres`).
``commandbus_schema``
    A fresh schema name for this test, dropped with everything in it afterwards.
``commandbus_pool`` (async)
    An open ``AsyncConnectionPool`` on the server, the bus's tables migrated into
    ``commandbus_schema``, and ``search_path`` set to that schema first: the test's own
    tables (``CREATE TABLE orders ...``) land there too and are dropped with it.
``commandbus_bus`` (async)
    ``CommandBus(commandbus_pool, schema=commandbus_schema)``.
``commandbus_sync_runtime``
    A ``commandbus_sync.SyncRuntime`` for this test, shut down after it (needs
    ``commandbus[sync]``).
``commandbus_sync_pool`` / ``commandbus_sync_bus``
    The same pool and bus, opened on that runtime, for blocking code (Flask, Django).

Async fixtures need an async test runner: anyio's pytest plugin (``@pytest.mark.anyio``,
as anyio comes with ``commandbus[sync]``) or pytest-asyncio in auto mode.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from commandbus import CommandBus
    from commandbus_sync import SyncCommandBus, SyncRuntime

__all__ = [
    "commandbus_bus",
    "commandbus_database_url",
    "commandbus_pool",
    "commandbus_schema",
    "commandbus_sync_bus",
    "commandbus_sync_pool",
    "commandbus_sync_runtime",
]


def _pool_kwargs(schema: str) -> dict[str, Any]:
    """Connections whose unqualified names resolve in the test's schema first."""
    return {"kwargs": {"options": f"-c search_path={schema},public"}}


@pytest.fixture(scope="session")
def commandbus_database_url() -> Iterator[str]:
    """A PostgreSQL URL for the session: ``DATABASE_URL`` or a throwaway server."""
    from commandbus.testing.postgres import postgres_server

    with postgres_server() as server:
        yield server.url


@pytest.fixture
def commandbus_schema(commandbus_database_url: str) -> Iterator[str]:
    """A fresh schema name; the schema is dropped (CASCADE) after the test."""
    import psycopg
    from psycopg import sql

    name = f"cbtest_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(commandbus_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
async def commandbus_pool(
    commandbus_database_url: str, commandbus_schema: str
) -> AsyncIterator[AsyncConnectionPool]:
    """An open async pool on a migrated, fresh schema (closed after the test)."""
    from psycopg_pool import AsyncConnectionPool

    from commandbus import migrate

    async with AsyncConnectionPool(
        commandbus_database_url,
        min_size=1,
        max_size=20,
        open=False,
        **_pool_kwargs(commandbus_schema),
    ) as pool:
        await migrate(pool, schema=commandbus_schema)
        yield pool


@pytest.fixture
async def commandbus_bus(
    commandbus_pool: AsyncConnectionPool, commandbus_schema: str
) -> AsyncIterator[CommandBus]:
    """A bus on :func:`commandbus_pool`'s schema (closed after the test)."""
    from commandbus import CommandBus

    async with CommandBus(commandbus_pool, schema=commandbus_schema) as bus:
        yield bus


@pytest.fixture
def commandbus_sync_runtime() -> Iterator[SyncRuntime]:
    """A SyncRuntime (one event loop thread) for this test, shut down after it."""
    try:
        from commandbus_sync import SyncRuntime
    except ImportError:  # pragma: no cover - depends on the installation
        pytest.fail(
            "commandbus_sync_runtime needs the sync companion: pip install commandbus[sync] "
            "(from a clone: pip install -e packages/commandbus-sync)",
            pytrace=False,
        )
    with SyncRuntime() as runtime:
        yield runtime


@pytest.fixture
def commandbus_sync_pool(
    commandbus_sync_runtime: SyncRuntime, commandbus_database_url: str, commandbus_schema: str
) -> AsyncConnectionPool:
    """A pool opened on the runtime's loop, on a migrated fresh schema (closed by the
    runtime at its shutdown, before the schema is dropped)."""
    from commandbus import migrate

    pool = commandbus_sync_runtime.open_pool(
        commandbus_database_url, min_size=1, max_size=20, **_pool_kwargs(commandbus_schema)
    )
    commandbus_sync_runtime.run(migrate, pool, schema=commandbus_schema)
    return pool


@pytest.fixture
def commandbus_sync_bus(
    commandbus_sync_runtime: SyncRuntime,
    commandbus_sync_pool: AsyncConnectionPool,
    commandbus_schema: str,
) -> Iterator[SyncCommandBus]:
    """A SyncCommandBus on :func:`commandbus_sync_pool` (closed after the test)."""
    from commandbus_sync import SyncCommandBus

    bus = SyncCommandBus(
        pool=commandbus_sync_pool, runtime=commandbus_sync_runtime, schema=commandbus_schema
    )
    try:
        yield bus
    finally:
        bus.close()
