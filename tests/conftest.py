"""Test fixtures: a real PostgreSQL for the session, and a database of its own per test.

The server is ``DATABASE_URL`` when set, otherwise a throwaway cluster started from the
local PostgreSQL binaries (see ``commandbus.testing.postgres``). The shipped pytest plugin
migrates a template database once per session (per xdist worker); each test that touches
the database gets a clone of it (``CREATE DATABASE ... TEMPLATE``), dropped afterwards, so
tests run in any order and in parallel without migrating anything themselves.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus
from commandbus.testing.databases import PREFIX
from commandbus.testing.databases import database_url as url_of

#: Fixtures whose test gets ``schema`` migrated (the template's); other tests get a fresh,
#: empty schema name, for what they create or migrate themselves.
MIGRATED = frozenset({"pool", "sync_pool"})


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every ``async def`` test on anyio's asyncio runner without per-test markers.

    And the ``slow`` tests first (each takes seconds to a minute, mostly waiting on a
    subprocess): with two xdist workers, one started last would keep one worker busy
    alone at the end. After pytest-randomly's shuffle; a stable sort keeps its order."""
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.anyio)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def commandbus_schema() -> str:
    """The migrated schema of the tests' databases: not the library's default, so that
    code which forgets to pass its schema on fails here."""
    return f"cbt_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def server_url(commandbus_server_url: str) -> str:
    """The session's server (the shipped plugin's): for what outlives one test only."""
    return commandbus_server_url


@pytest.fixture
def database_url(commandbus_database_url: str) -> str:
    """This test's own database, a clone of the migrated template (the plugin's)."""
    return commandbus_database_url


@pytest.fixture
def schema(request: pytest.FixtureRequest, database_url: str, commandbus_schema: str) -> str:
    """The template's migrated schema when the test asks for a pool on it; otherwise a
    fresh, empty schema name (created by the test if it wants, gone with its database)."""
    if MIGRATED & set(request.fixturenames):
        return commandbus_schema
    return f"cbt_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def fresh_database(server_url: str) -> Iterator[str]:
    """The URL of a new, empty database of this test's own, dropped afterwards (for code
    that runs in another process: docs examples, an installed wheel)."""
    name = f"{PREFIX}{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_of(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """An open async pool on the test's database (``schema`` is migrated there), its
    ``min_size`` connections established."""
    async with AsyncConnectionPool(database_url, min_size=2, max_size=20, open=False) as p:
        await p.wait()
        yield p


@pytest.fixture
async def bus(pool: AsyncConnectionPool, schema: str) -> CommandBus:
    return CommandBus(pool, schema=schema)
