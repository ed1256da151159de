"""Blocking twins of :func:`commandbus.list_workers`, :func:`commandbus.check_health` and
:func:`commandbus.stats.read_stats`.

For health endpoints and admin views in synchronous apps: the same arguments, results and
exceptions, run on a :class:`SyncRuntime` (the default one unless given) with a pool
opened on it (``runtime.open_pool(...)``).
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

import commandbus
import commandbus.stats
from commandbus import HealthReport, WorkerInfo
from commandbus.stats import Stats
from commandbus_sync.runtime import SyncRuntime, get_default_runtime

__all__ = ["check_health", "list_workers", "read_stats"]


def list_workers(
    pool: AsyncConnectionPool,
    *,
    runtime: SyncRuntime | None = None,
    schema: str = "commandbus",
    domain: str | None = None,
    kind: str | None = None,
) -> list[WorkerInfo]:
    """Blocking :func:`commandbus.list_workers`."""
    rt = runtime if runtime is not None else get_default_runtime()
    return rt.run(
        commandbus.list_workers, rt.check_pool(pool), schema=schema, domain=domain, kind=kind
    )


def check_health(
    pool: AsyncConnectionPool,
    *,
    runtime: SyncRuntime | None = None,
    schema: str = "commandbus",
    domain: str | None = None,
    max_pending_age: float | None = None,
    max_troubleshooting: int | None = None,
    timeout: float = 5.0,
) -> HealthReport:
    """Blocking :func:`commandbus.check_health`."""
    rt = runtime if runtime is not None else get_default_runtime()
    return rt.run(
        commandbus.check_health,
        rt.check_pool(pool),
        schema=schema,
        domain=domain,
        max_pending_age=max_pending_age,
        max_troubleshooting=max_troubleshooting,
        timeout=timeout,
    )


def read_stats(
    pool: AsyncConnectionPool, *, runtime: SyncRuntime | None = None, schema: str = "commandbus"
) -> Stats:
    """Blocking :func:`commandbus.stats.read_stats`."""
    rt = runtime if runtime is not None else get_default_runtime()
    return rt.run(commandbus.stats.read_stats, rt.check_pool(pool), schema=schema)
