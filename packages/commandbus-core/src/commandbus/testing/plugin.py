"""The commandbus pytest plugin, loaded by pytest through the ``pytest11`` entry point of
``commandbus-core``. It defines fixtures and two small hooks that fit them to the async
runner in use; nothing starts, connects or imports further until a test asks for a
fixture.

Each test gets **a database of its own**, cloned from a template database migrated once
per session, and dropped after the test: code under test that uses the defaults
(``CommandBus(pool)``, ``Worker(pool, ...)``, schema ``"commandbus"``, ``DATABASE_URL``
read at run time) works unchanged and cannot reach any other database.

Fixtures (every name starts with ``commandbus_``):

``commandbus_server_url`` (session)
    The server: ``DATABASE_URL`` if set, else a throwaway cluster from the local
    PostgreSQL binaries, stopped after the session (see :mod:`commandbus.testing.postgres`).
    The template and the tests' databases are created next to the database it names;
    nothing is written into that database itself.
``commandbus_schema`` (session)
    The schema migrated into the template: ``"commandbus"``, the library's default.
    Override it (a session fixture of the same name) if your code uses another one.
``commandbus_template`` (session)
    The migrated template database (:class:`commandbus.testing.databases.DatabaseTemplate`).
``commandbus_database_url``
    This test's own database, a clone of the template, dropped after the test. While the
    test runs, ``DATABASE_URL`` names it too.
``commandbus_pool`` (async)
    An open ``AsyncConnectionPool`` on the test's database.
``commandbus_bus`` (async)
    ``CommandBus(commandbus_pool, schema=commandbus_schema)``.
``commandbus_sync_runtime``
    A ``commandbus_sync.SyncRuntime`` for this test, shut down after it (needs
    ``commandbus[sync]``).
``commandbus_sync_pool`` / ``commandbus_sync_bus``
    The same pool and bus, opened on that runtime, for blocking code (Flask, Django).

The async fixtures run on asyncio (psycopg's async API), under anyio's pytest plugin
(tests marked ``anyio``; without an ``anyio_backend`` fixture of yours, their trio
variants are deselected) or pytest-asyncio (strict mode: tests marked ``asyncio``; or
auto mode), on the test's own event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from commandbus import CommandBus
    from commandbus.testing.databases import DatabaseTemplate
    from commandbus_sync import SyncCommandBus, SyncRuntime

__all__ = [
    "commandbus_bus",
    "commandbus_database_url",
    "commandbus_pool",
    "commandbus_schema",
    "commandbus_server_url",
    "commandbus_sync_bus",
    "commandbus_sync_pool",
    "commandbus_sync_runtime",
    "commandbus_template",
]

#: URLs of the throwaway servers this plugin started (no fsync: cheap checkpoints).
_THROWAWAY: set[str] = set()

#: The fixtures that must run on the test's event loop.
_ASYNC_FIXTURES = frozenset({"commandbus_pool", "commandbus_bus"})


def _on_the_tests_loop(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an async fixture the way ``pytest_asyncio.fixture`` does, so that
    pytest-asyncio's strict mode runs it for tests marked ``asyncio``;
    :func:`pytest_fixture_setup` fits the mark to each test."""
    setattr(func, "_force_asyncio_fixture", True)  # noqa: B010 - pytest-asyncio's names
    setattr(func, "_loop_scope", None)  # noqa: B010
    return func


@pytest.fixture(scope="session")
def commandbus_server_url() -> Iterator[str]:
    """The session's server: ``DATABASE_URL`` or a throwaway one. Only ``CREATE
    DATABASE`` and ``DROP DATABASE`` are sent to the database it names."""
    from commandbus.testing.postgres import postgres_server

    with postgres_server() as server:
        if server.throwaway:
            _THROWAWAY.add(server.url)
        yield server.url


@pytest.fixture(scope="session")
def commandbus_schema() -> str:
    """The schema the template has migrated (the library's default)."""
    return "commandbus"


@pytest.fixture(scope="session")
def commandbus_template(
    commandbus_server_url: str, commandbus_schema: str
) -> Iterator[DatabaseTemplate]:
    """A template database with ``commandbus_schema`` migrated, dropped after the session."""
    from commandbus.testing.databases import DatabaseTemplate

    with DatabaseTemplate(
        commandbus_server_url,
        schemas=[commandbus_schema],
        copy_files=commandbus_server_url in _THROWAWAY,
    ) as template:
        yield template


@pytest.fixture
def commandbus_database_url(commandbus_template: DatabaseTemplate) -> Iterator[str]:
    """The URL of this test's own database (a clone of the template), dropped after the
    test; ``DATABASE_URL`` names it while the test runs."""
    with commandbus_template.database() as url, pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_URL", url)
        yield url


@pytest.fixture
@_on_the_tests_loop
async def commandbus_pool(commandbus_database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """An open async pool on the test's database (closed after the test)."""
    from psycopg_pool import AsyncConnectionPool

    _require_asyncio("commandbus_pool")
    async with AsyncConnectionPool(
        commandbus_database_url, min_size=1, max_size=20, open=False
    ) as pool:
        await pool.wait()  # the first query of the test does not wait for a connection
        yield pool


@pytest.fixture
@_on_the_tests_loop
async def commandbus_bus(
    commandbus_pool: AsyncConnectionPool, commandbus_schema: str
) -> AsyncIterator[CommandBus]:
    """A bus on :func:`commandbus_pool` (closed after the test)."""
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
    commandbus_sync_runtime: SyncRuntime, commandbus_database_url: str
) -> AsyncConnectionPool:
    """A pool opened on the runtime's loop, on the test's database (closed by the runtime
    at its shutdown, before the database is dropped)."""
    return commandbus_sync_runtime.open_pool(commandbus_database_url, min_size=1, max_size=20)


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


def _require_asyncio(fixture: str) -> None:
    """A clear failure for a test run on another event loop (anyio's trio backend)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pytest.fail(
            f"{fixture} runs on asyncio only (psycopg's async API): this test runs on "
            "another event loop; make anyio_backend return 'asyncio'",
            pytrace=False,
        )


# -- fitting the async fixtures to the runner ---------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the trio variants that anyio's default ``anyio_backend`` (every installed
    backend) makes of tests using the async fixtures: they could only fail. An
    ``anyio_backend`` fixture of the user's own is obeyed as it is."""
    trio = [item for item in items if _is_default_trio_variant(item)]
    if trio:
        config.hook.pytest_deselected(items=trio)
        items[:] = [item for item in items if item not in trio]


def _is_default_trio_variant(item: pytest.Item) -> bool:
    if not isinstance(item, pytest.Function) or not _ASYNC_FIXTURES & set(item.fixturenames):
        return False
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("anyio_backend") if callspec is not None else None
    name = backend[0] if isinstance(backend, tuple) else backend
    if name != "trio":
        return False
    definitions = item._fixtureinfo.name2fixturedefs.get("anyio_backend", ())
    return bool(definitions) and definitions[-1].func.__module__ == "anyio.pytest_plugin"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[Any]:
    """Fit the async fixtures' pytest-asyncio mark to the test: for a test marked
    ``asyncio`` they run on its loop (the loop scope of the test); for any other test
    (anyio's, say) pytest-asyncio's strict mode leaves them to the test's runner."""
    func = fixturedef.func
    if fixturedef.argname not in _ASYNC_FIXTURES or getattr(func, "__module__", "") != __name__:
        return (yield)
    marker = request.node.get_closest_marker("asyncio")
    if marker is None or "anyio_backend" in request.fixturenames:
        del func._force_asyncio_fixture
        try:
            return (yield)
        finally:
            func._force_asyncio_fixture = True
    func._loop_scope = (
        marker.kwargs.get("loop_scope")
        or marker.kwargs.get("scope")
        or _ini(request.config, "asyncio_default_test_loop_scope")
        or "function"
    )
    try:
        return (yield)
    finally:
        func._loop_scope = None


def _ini(config: pytest.Config, name: str) -> Any:
    try:
        return config.getini(name)
    except ValueError:  # pytest-asyncio is not installed: no such setting
        return None
