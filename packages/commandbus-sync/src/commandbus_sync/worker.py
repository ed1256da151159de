"""SyncWorker: run a :class:`commandbus.Worker` from blocking code.

The worker runs on the runtime's loop; plain-``def`` handlers (the normal case in sync
apps) run in the worker's own thread pool, never on the loop, so a blocking handler
cannot stall leasing, lease extension or other handlers. Retry, lease and outcome rules
are the core's: nothing is re-implemented here.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus import HandlerRegistry, RetryPolicy, ValidationError, Worker
from commandbus.hooks import Hook
from commandbus.pruner import DEFAULT_RETENTION, Retention
from commandbus.schedules import Schedule
from commandbus_sync._service import ServiceFacade
from commandbus_sync.config import configured_thread_pool_size, default_thread_pool_size
from commandbus_sync.runtime import SyncRuntime, get_default_runtime

__all__ = ["SyncWorker"]

#: Worker's default concurrency (read from its signature, so the two never drift).
_CONCURRENCY: int = inspect.signature(Worker).parameters["concurrency"].default


class SyncWorker(ServiceFacade):
    """Blocking :class:`Worker`. Build it from a worker, or from the worker's arguments::

        SyncWorker(worker, runtime=rt)
        SyncWorker(pool=pool, domain="emails", registry=registry, runtime=rt)
        SyncWorker(conninfo="postgresql://...", domain="emails", registry=registry)

    ``thread_pool_size`` (threads for plain-``def`` handlers) defaults to
    :func:`commandbus_sync.configure`'s setting, else ``COMMAND_BUS_SYNC_THREADS``, else
    the larger of a CPU-based default and ``concurrency``. ``runtime`` defaults to the
    process-wide default runtime.
    """

    _target: Worker

    def __init__(
        self,
        worker: Worker | None = None,
        /,
        *,
        pool: AsyncConnectionPool | None = None,
        conninfo: str | None = None,
        runtime: SyncRuntime | None = None,
        domain: str | None = None,
        registry: HandlerRegistry | None = None,
        concurrency: int | None = None,
        visibility_timeout: float | None = None,
        poll_interval: float | None = None,
        retry_policy: RetryPolicy | None = None,
        use_notify: bool | None = None,
        thread_pool_size: int | None = None,
        schema: str | None = None,
        schedules: Sequence[Schedule] | None = None,
        retention: Retention | None = DEFAULT_RETENTION,
        pool_kwargs: Mapping[str, Any] | None = None,
        hooks: Sequence[Hook] | None = None,
        listen_conninfo: str | None = None,
        handler_timeout: float | None = None,
    ) -> None:
        self.runtime = runtime if runtime is not None else get_default_runtime()
        if retention is None and worker is not None:
            raise ValidationError("retention", "is taken from the given Worker; omit it")
        settings = {
            "domain": domain,
            "registry": registry,
            "concurrency": concurrency,
            "visibility_timeout": visibility_timeout,
            "poll_interval": poll_interval,
            "retry_policy": retry_policy,
            "use_notify": use_notify,
            "hooks": hooks,
            "thread_pool_size": thread_pool_size,
            "schema": schema,
            "schedules": schedules,
            "retention": None if retention is DEFAULT_RETENTION else retention,
            "listen_conninfo": listen_conninfo,
            "handler_timeout": handler_timeout,
        }
        self._target = self._bind(
            Worker,
            worker,
            name="worker",
            pool=pool,
            conninfo=conninfo,
            pool_kwargs=None if pool_kwargs is None else dict(pool_kwargs),
            build=_build_worker,
            settings=settings,
        )
        if retention is None:  # the opt-out (None in settings means "the default")
            self._target.pruner = None
        self._init_runner("SyncWorker")

    @property
    def worker(self) -> Worker:
        """The async worker every call is delegated to (its ``stats``, ``ready``, ...)."""
        return self._target

    def run(
        self,
        *,
        block: bool = True,
        concurrency: int | None = None,
        thread_pool_size: int | None = None,
    ) -> None:
        """Start the worker on the runtime's loop.

        With ``block=True`` (a worker process) return after :meth:`stop` from another
        thread, or after Ctrl-C / SIGTERM, which stop it gracefully. With ``block=False``
        return as soon as it listens for commands. ``concurrency`` and
        ``thread_pool_size``, when given, replace the worker's settings from this run on.
        """
        self._start(block=block, concurrency=concurrency, thread_pool_size=thread_pool_size)

    def drain(self, *, timeout: float = 30.0) -> list[uuid.UUID]:
        """Blocking :meth:`Worker.drain`: run every command of the domain due now, then
        return their ids (for tests and one-off jobs; the worker must not be running)."""
        return self.runtime.run(self._target.drain, timeout=timeout)


def _build_worker(pool: AsyncConnectionPool, **settings: Any) -> Worker:
    for required in ("domain", "registry"):
        if required not in settings:
            raise ValidationError(required, "is required to build a Worker")
    if "thread_pool_size" not in settings:
        # configure()/COMMAND_BUS_SYNC_THREADS when set; else enough threads for every
        # leased command (fewer would leave leases ticking while commands wait).
        configured = configured_thread_pool_size()
        settings["thread_pool_size"] = (
            configured
            if configured is not None
            else max(default_thread_pool_size(), settings.get("concurrency", _CONCURRENCY))
        )
    return Worker(pool, **settings)
