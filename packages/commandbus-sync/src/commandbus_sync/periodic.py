"""Blocking twins of the round services and operator calls of issue 15: the scheduler
(periodic commands), the pruner (retention), and pausing a domain.

``SyncScheduler`` and ``SyncPruner`` run the core's :class:`~commandbus.Scheduler` and
:class:`~commandbus.Pruner` on a :class:`SyncRuntime` exactly as :class:`SyncWorker` runs
a worker (``run(block=...)``, ``stop``, Ctrl-C and SIGTERM); their one-shot calls
(``run_due``, ``prune``) and the functions below run the core's on the runtime. Nothing is
re-implemented here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

import commandbus.domains
import commandbus.schedules
from commandbus import ValidationError
from commandbus.domains import PausedDomain
from commandbus.pruner import Pruner, Retention
from commandbus.schedules import Schedule, Scheduler, ScheduleState
from commandbus_sync._facade import blocking
from commandbus_sync._service import ServiceFacade
from commandbus_sync.runtime import SyncRuntime, get_default_runtime

__all__ = [
    "SyncPruner",
    "SyncScheduler",
    "list_paused",
    "list_schedules",
    "pause_domain",
    "resume_domain",
]


class SyncScheduler(ServiceFacade):
    """Blocking :class:`~commandbus.Scheduler`, built from one or from its arguments::

    SyncScheduler(scheduler, runtime=rt)
    SyncScheduler(pool=pool, schedules=[...], runtime=rt)
    SyncScheduler(conninfo="postgresql://...", schedules=[...])
    """

    _target: Scheduler

    def __init__(
        self,
        scheduler: Scheduler | None = None,
        /,
        *,
        pool: AsyncConnectionPool | None = None,
        conninfo: str | None = None,
        runtime: SyncRuntime | None = None,
        schedules: Sequence[Schedule] | None = None,
        schema: str | None = None,
        now: Callable[[], datetime] | None = None,
        max_wait: float | None = None,
        pool_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.runtime = runtime if runtime is not None else get_default_runtime()
        settings = {"schedules": schedules, "schema": schema, "now": now, "max_wait": max_wait}
        self._target = self._bind(
            Scheduler,
            scheduler,
            name="scheduler",
            pool=pool,
            conninfo=conninfo,
            pool_kwargs=None if pool_kwargs is None else dict(pool_kwargs),
            build=_build_scheduler,
            settings=settings,
        )
        self._init_runner("SyncScheduler")

    @property
    def scheduler(self) -> Scheduler:
        """The async scheduler every call is delegated to."""
        return self._target

    def run(self, *, block: bool = True) -> None:
        """Start sending the schedules' commands; ``block`` as in :meth:`SyncWorker.run`."""
        self._start(block=block)

    run_due = blocking(Scheduler.run_due)

    def next_runs(self, now: datetime | None = None) -> list[tuple[Schedule, datetime]]:
        """Each schedule with its next tick (no database access)."""
        return self._target.next_runs(now)


class SyncPruner(ServiceFacade):
    """Blocking :class:`~commandbus.Pruner`::

    SyncPruner(pool=pool, retention=Retention(older_than=timedelta(days=30)), runtime=rt)
    """

    _target: Pruner

    def __init__(
        self,
        pruner: Pruner | None = None,
        /,
        *,
        pool: AsyncConnectionPool | None = None,
        conninfo: str | None = None,
        runtime: SyncRuntime | None = None,
        retention: Retention | None = None,
        schema: str | None = None,
        pool_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.runtime = runtime if runtime is not None else get_default_runtime()
        self._target = self._bind(
            Pruner,
            pruner,
            name="pruner",
            pool=pool,
            conninfo=conninfo,
            pool_kwargs=None if pool_kwargs is None else dict(pool_kwargs),
            build=Pruner,
            settings={"retention": retention, "schema": schema},
        )
        self._init_runner("SyncPruner")

    @property
    def pruner(self) -> Pruner:
        """The async pruner every call is delegated to (its ``stats``, ...)."""
        return self._target

    def run(self, *, block: bool = True) -> None:
        """Prune every ``retention.interval`` seconds; ``block`` as in :meth:`SyncWorker.run`."""
        self._start(block=block)

    prune = blocking(Pruner.prune)


def list_schedules(
    pool: AsyncConnectionPool, *, runtime: SyncRuntime | None = None, schema: str = "commandbus"
) -> list[ScheduleState]:
    """Blocking :func:`commandbus.list_schedules`."""
    rt = _runtime(runtime, pool)
    return rt.run(commandbus.schedules.list_schedules, pool, schema=schema)


def pause_domain(
    pool: AsyncConnectionPool,
    domain: str,
    *,
    operator: str | None = None,
    reason: str | None = None,
    runtime: SyncRuntime | None = None,
    schema: str = "commandbus",
) -> PausedDomain:
    """Blocking :func:`commandbus.pause_domain`."""
    rt = _runtime(runtime, pool)
    return rt.run(
        commandbus.domains.pause_domain,
        pool,
        domain,
        operator=operator,
        reason=reason,
        schema=schema,
    )


def resume_domain(
    pool: AsyncConnectionPool,
    domain: str,
    *,
    operator: str | None = None,
    runtime: SyncRuntime | None = None,
    schema: str = "commandbus",
) -> bool:
    """Blocking :func:`commandbus.resume_domain`."""
    rt = _runtime(runtime, pool)
    return rt.run(commandbus.domains.resume_domain, pool, domain, operator=operator, schema=schema)


def list_paused(
    pool: AsyncConnectionPool, *, runtime: SyncRuntime | None = None, schema: str = "commandbus"
) -> list[PausedDomain]:
    """Blocking :func:`commandbus.list_paused`."""
    rt = _runtime(runtime, pool)
    return rt.run(commandbus.domains.list_paused, pool, schema=schema)


def _runtime(runtime: SyncRuntime | None, pool: AsyncConnectionPool) -> SyncRuntime:
    rt = runtime if runtime is not None else get_default_runtime()
    rt.check_pool(pool)
    return rt


def _build_scheduler(pool: AsyncConnectionPool, **settings: Any) -> Scheduler:
    if "schedules" not in settings:
        raise ValidationError("schedules", "is required to build a Scheduler")
    return Scheduler(pool, **settings)
