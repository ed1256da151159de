"""Process managers from blocking code: router, manager and repository facades.

* :class:`SyncProcessReplyRouter` runs a :class:`commandbus.ProcessReplyRouter` on the
  runtime's loop (``run``/``stop`` like :class:`~commandbus_sync.SyncWorker`);
* :class:`SyncProcessManager` starts processes of one manager, also inside the caller's
  synchronous transaction (``conn=``, the outbox pattern);
* :class:`SyncProcessRepository` is the blocking twin of :class:`commandbus.ProcessRepository`.

The managers themselves are the core's ``BaseProcessManager`` subclasses, unchanged: their
hooks are plain functions already, called by the router on the loop.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BaseProcessManager,
    ProcessReplyRouter,
    ProcessRepository,
    RetryPolicy,
    ValidationError,
)
from commandbus.hooks import Hook
from commandbus_sync._facade import SchemaFacade, blocking
from commandbus_sync._outbox import check_connection, execute_send
from commandbus_sync._service import ServiceFacade
from commandbus_sync.runtime import SyncRuntime, get_default_runtime

__all__ = ["SyncProcessManager", "SyncProcessReplyRouter", "SyncProcessRepository"]


class SyncProcessManager:
    """Blocking access to one process manager: ``SyncProcessManager(manager, runtime=rt)``."""

    def __init__(
        self, manager: BaseProcessManager[Any, Any], /, *, runtime: SyncRuntime | None = None
    ) -> None:
        if not isinstance(manager, BaseProcessManager):
            raise ValidationError(
                "manager", f"must be a BaseProcessManager, got {type(manager).__name__}"
            )
        self.runtime = runtime if runtime is not None else get_default_runtime()
        self.runtime.check_pool(manager.bus.pool)
        self.manager = manager

    def start(
        self, data: dict[str, Any], *, conn: psycopg.Connection[Any] | None = None
    ) -> uuid.UUID:
        """Blocking :meth:`BaseProcessManager.start`. With ``conn`` (the caller's sync
        connection) the process and its first command are written in the caller's
        transaction, with the core's statements, and appear when the caller commits."""
        if conn is None:
            return self.runtime.run(self.manager.start, data)
        sync_conn = check_connection(conn)
        process_id, prepared = self.manager.prepare_start(data)
        execute_send(sync_conn, prepared, self.manager.bus.hooks)
        return process_id


class SyncProcessReplyRouter(ServiceFacade):
    """Blocking :class:`ProcessReplyRouter`, built from a router or its arguments::

        SyncProcessReplyRouter(router, runtime=rt)
        SyncProcessReplyRouter(pool=pool, reply_queue="orders.replies",
                               managers=[fulfilment], runtime=rt)

    ``managers`` may be core managers or :class:`SyncProcessManager` wrappers.
    """

    _target: ProcessReplyRouter

    def __init__(
        self,
        router: ProcessReplyRouter | None = None,
        /,
        *,
        pool: AsyncConnectionPool | None = None,
        conninfo: str | None = None,
        runtime: SyncRuntime | None = None,
        reply_queue: str | None = None,
        managers: Sequence[BaseProcessManager[Any, Any] | SyncProcessManager] | None = None,
        concurrency: int | None = None,
        visibility_timeout: float | None = None,
        use_notify: bool | None = None,
        schema: str | None = None,
        retry_policy: RetryPolicy | None = None,
        poll_interval: float | None = None,
        pool_kwargs: Mapping[str, Any] | None = None,
        hooks: Sequence[Hook] | None = None,
    ) -> None:
        self.runtime = runtime if runtime is not None else get_default_runtime()
        settings = {
            "reply_queue": reply_queue,
            "managers": None if managers is None else _unwrap(managers),
            "concurrency": concurrency,
            "visibility_timeout": visibility_timeout,
            "use_notify": use_notify,
            "schema": schema,
            "retry_policy": retry_policy,
            "poll_interval": poll_interval,
            "hooks": hooks,
        }
        self._target = self._bind(
            ProcessReplyRouter,
            router,
            name="router",
            pool=pool,
            conninfo=conninfo,
            pool_kwargs=None if pool_kwargs is None else dict(pool_kwargs),
            build=_build_router,
            settings=settings,
        )
        self._init_runner("SyncProcessReplyRouter")

    @property
    def router(self) -> ProcessReplyRouter:
        """The async router every call is delegated to (its ``stats``, ``ready``, ...)."""
        return self._target

    def run(self, *, block: bool = True, concurrency: int | None = None) -> None:
        """Start the router on the runtime's loop; ``block`` as in :meth:`SyncWorker.run`
        (Ctrl-C / SIGTERM stop a blocking run gracefully)."""
        self._start(block=block, concurrency=concurrency)


class SyncProcessRepository(SchemaFacade):
    """Blocking :class:`ProcessRepository`, built from a repository or its arguments::

    SyncProcessRepository(repository, runtime=rt)
    SyncProcessRepository(pool=pool, runtime=rt, schema="app")
    """

    target_type = ProcessRepository
    instance_name = "repository"
    _target: ProcessRepository

    @property
    def repository(self) -> ProcessRepository:
        """The async repository every call is delegated to."""
        return self._target

    get = blocking(ProcessRepository.get)
    list = blocking(ProcessRepository.list)
    get_audit_trail = blocking(ProcessRepository.get_audit_trail)
    list_parked_replies = blocking(ProcessRepository.list_parked_replies)
    retry_parked_reply = blocking(ProcessRepository.retry_parked_reply)
    discard_parked_reply = blocking(ProcessRepository.discard_parked_reply)


def _unwrap(
    managers: Sequence[BaseProcessManager[Any, Any] | SyncProcessManager],
) -> list[BaseProcessManager[Any, Any]]:
    if isinstance(managers, BaseProcessManager | SyncProcessManager | str):
        raise ValidationError("managers", "must be a non-empty list of process managers")
    return [m.manager if isinstance(m, SyncProcessManager) else m for m in managers]


def _build_router(pool: AsyncConnectionPool, **settings: Any) -> ProcessReplyRouter:
    for required in ("reply_queue", "managers"):
        if required not in settings:
            raise ValidationError(required, "is required to build a ProcessReplyRouter")
    return ProcessReplyRouter(pool, **settings)
