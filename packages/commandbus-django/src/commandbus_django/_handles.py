"""The process's way to the bus: one :class:`SyncCommandBus` per database and schema, on
the default :class:`SyncRuntime`.

Sending never uses its pool (a task is written on Django's own connection). Reads
(``get_result``) go through a *null* pool: a connection per read, closed after it, so that
nothing idles on the database between requests, and a test database can be dropped at the
end of a test run (a cached pool of open connections would block ``DROP DATABASE``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from psycopg_pool import AsyncNullConnectionPool

from commandbus_django._connection import conninfo
from commandbus_sync import SyncCommandBus
from commandbus_sync.runtime import SyncRuntime, get_default_runtime

__all__ = ["Handles", "close_all", "handles_for"]


@dataclass(frozen=True, slots=True)
class Handles:
    runtime: SyncRuntime
    pool: AsyncNullConnectionPool
    bus: SyncCommandBus
    schema: str


_lock = threading.Lock()
_cache: dict[tuple[str, str, str], Handles] = {}


def handles_for(alias: str, schema: str) -> Handles:
    """The bus on database ``alias`` (as Django connects to it now: a test database once
    the test runner made one) and ``schema``."""
    dsn = conninfo(alias)
    key = (alias, dsn, schema)
    found = _cache.get(key)
    if found is not None and not found.runtime.closed:
        return found
    with _lock:
        found = _cache.get(key)
        if found is None or found.runtime.closed:
            runtime = get_default_runtime()
            pool = runtime.run(_open_null_pool, dsn)
            bus = SyncCommandBus(pool=pool, runtime=runtime, schema=schema)
            found = _cache[key] = Handles(runtime, pool, bus, schema)
    return found


async def _open_null_pool(dsn: str) -> AsyncNullConnectionPool:
    pool = AsyncNullConnectionPool(
        dsn, open=False, max_size=4, timeout=10, name="commandbus-django"
    )
    await pool.open()
    return pool


def close_all() -> None:
    """Close every pool this process opened (settings changed, tests ending)."""
    with _lock:
        found = list(_cache.values())
        _cache.clear()
    for handles in found:
        if not handles.runtime.closed:
            handles.runtime.run(handles.pool.close)


def _forget_in_child() -> None:
    _cache.clear()  # the parent's runtime thread does not exist in a fork


os.register_at_fork(after_in_child=_forget_in_child)
