"""Test fixtures: a real PostgreSQL for the session, and an isolated schema per test.

The server is ``DATABASE_URL`` when set, otherwise a throwaway cluster started from
the local PostgreSQL binaries (see ``commandbus.testing.postgres``). Each test gets its
own migrated schema, dropped afterwards, so tests run in any order and in parallel.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, migrate


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every ``async def`` test on anyio's asyncio runner without per-test markers."""
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.anyio)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def database_url(commandbus_database_url: str) -> str:
    """The session's server: the one the shipped pytest plugin provides (one for both)."""
    return commandbus_database_url


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A fresh, empty schema name for this test; dropped (with everything in it) afterwards."""
    name = f"cbt_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """The URL of a new, empty database of this test's own, dropped afterwards (for code
    that runs in another process: docs examples, an installed wheel)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**info)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
async def pool(database_url: str, schema: str) -> AsyncIterator[AsyncConnectionPool]:
    """An open async pool on a migrated test schema."""
    async with AsyncConnectionPool(database_url, min_size=2, max_size=20, open=False) as p:
        await migrate(p, schema=schema)
        yield p


@pytest.fixture
async def bus(pool: AsyncConnectionPool, schema: str) -> CommandBus:
    return CommandBus(pool, schema=schema)
