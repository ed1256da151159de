"""Sync fixtures: a runtime per test, and a pool opened on *its* loop (not the test's).

The root ``pool`` fixture is opened on the test's own event loop, which a SyncRuntime
rightly refuses; sync tests use ``sync_pool`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus_sync import SyncCommandBus, SyncRuntime


@pytest.fixture
def runtime() -> Iterator[SyncRuntime]:
    with SyncRuntime() as rt:
        yield rt


@pytest.fixture
def sync_pool(runtime: SyncRuntime, database_url: str) -> AsyncConnectionPool:
    """An async pool opened on ``runtime``'s loop, on the test's database, where ``schema``
    is migrated (the runtime closes it at shutdown, before the database is dropped)."""
    return runtime.open_pool(database_url, min_size=1, max_size=10)


@pytest.fixture
def sync_bus(runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str) -> SyncCommandBus:
    return SyncCommandBus(pool=sync_pool, runtime=runtime, schema=schema)
