"""SyncCommandBus: the blocking twin of :class:`commandbus.CommandBus`.

Same method names, arguments, results and exceptions; each call runs the async method on a
:class:`SyncRuntime` (one thread crossing). ``send``/``send_batch`` also take a synchronous
``psycopg.Connection`` for the outbox pattern in sync apps, e.g. in Django::

    from django.db import connection, transaction

    with transaction.atomic():
        order = Order.objects.create(...)
        bus.send("orders", "Ship", uuid4(), {"order": order.pk}, conn=connection.connection)
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, SendRequest, SendResult
from commandbus._validation import OWN_POOL, OwnPool, check_conn
from commandbus.batches import prepare_batch
from commandbus.hooks import Hook
from commandbus.models import BatchCommand, BatchInfo, BatchResult
from commandbus_sync._facade import Facade, as_async_callback, blocking
from commandbus_sync._outbox import check_connection, execute_send
from commandbus_sync.runtime import SyncRuntime, get_default_runtime

__all__ = ["SyncCommandBus"]


class SyncCommandBus(Facade):
    """Blocking :class:`CommandBus`. Build it from a bus, or from the bus's arguments::

        SyncCommandBus(bus, runtime=rt)
        SyncCommandBus(pool=pool, runtime=rt, schema="app")   # pool opened on rt
        SyncCommandBus(conninfo="postgresql://...")           # opens a pool on the runtime

    ``runtime`` defaults to the process-wide default runtime.
    """

    def __init__(
        self,
        bus: CommandBus | None = None,
        /,
        *,
        pool: AsyncConnectionPool | None = None,
        conninfo: str | None = None,
        runtime: SyncRuntime | None = None,
        schema: str | None = None,
        default_max_attempts: int | None = None,
        pool_kwargs: Mapping[str, Any] | None = None,
        hooks: Sequence[Hook] | None = None,
        max_data_bytes: int | None = None,
    ) -> None:
        self.runtime = runtime if runtime is not None else get_default_runtime()
        self._target = self._bind(
            CommandBus,
            bus,
            name="bus",
            pool=pool,
            conninfo=conninfo,
            pool_kwargs=None if pool_kwargs is None else dict(pool_kwargs),
            build=CommandBus,
            settings={
                "schema": schema,
                "default_max_attempts": default_max_attempts,
                "hooks": hooks,
                # None: the async bus's default (a bus without a cap: build it and pass it)
                "max_data_bytes": max_data_bytes,
            },
        )

    @property
    def bus(self) -> CommandBus:
        """The async bus every call is delegated to."""
        return self._target

    def send(
        self,
        domain: str,
        command_type: str,
        command_id: uuid.UUID,
        data: dict[str, Any],
        *,
        correlation_id: uuid.UUID | None = None,
        reply_to: str | None = None,
        max_attempts: int | None = None,
        delay: float | timedelta | None = None,
        conn: psycopg.Connection[Any] | OwnPool = OWN_POOL,
        priority: int = 0,
    ) -> SendResult:
        """Blocking :meth:`CommandBus.send`; ``conn`` is the caller's sync connection (outbox)."""
        if check_conn(conn, sync=True) is not None:
            request = SendRequest(
                domain,
                command_type,
                command_id,
                data,
                correlation_id,
                reply_to,
                max_attempts,
                delay,
                priority,
            )
            (result,) = self.send_batch([request], conn=conn)
            return result
        return self.runtime.run(
            self._target.send,
            domain,
            command_type,
            command_id,
            data,
            correlation_id=correlation_id,
            reply_to=reply_to,
            max_attempts=max_attempts,
            delay=delay,
            priority=priority,
        )

    def send_batch(
        self, requests: Sequence[SendRequest], *, conn: psycopg.Connection[Any] | OwnPool = OWN_POOL
    ) -> list[SendResult]:
        """Blocking :meth:`CommandBus.send_batch`; with ``conn``, written in the caller's
        thread and transaction with the core's own statement."""
        if check_conn(conn, sync=True) is not None:
            bus = self._target
            sync_conn = check_connection(conn)
            prepared = bus.sender.prepare(requests)
            results = execute_send(sync_conn, prepared, bus.hooks)
            if bus.hooks:
                self.runtime.run(bus.sender.sent, requests, results, in_callers_transaction=True)
            return results
        return self.runtime.run(self._target.send_batch, requests)

    cancel = blocking(CommandBus.cancel)
    get_command = blocking(CommandBus.get_command)
    query_commands = blocking(CommandBus.query_commands)
    get_audit_trail = blocking(CommandBus.get_audit_trail)
    get_batch = blocking(CommandBus.get_batch)
    list_batches = blocking(CommandBus.list_batches)
    list_batch_commands = blocking(CommandBus.list_batch_commands)

    def create_batch(
        self,
        domain: str,
        commands: Sequence[BatchCommand | SendRequest],
        *,
        name: str | None = None,
        custom_data: dict[str, Any] | None = None,
        conn: psycopg.Connection[Any] | OwnPool = OWN_POOL,
        on_complete: Callable[[BatchInfo], object] | None = None,
    ) -> BatchResult:
        """Blocking :meth:`CommandBus.create_batch`; ``conn`` may be the caller's sync
        connection (outbox); ``on_complete`` may be a plain ``def`` (it then runs in a
        worker thread, not on the loop)."""
        if check_conn(conn, sync=True) is not None:
            sync_conn = check_connection(conn)
            batch_id, prepared = prepare_batch(
                self._target, domain, commands, name=name, custom_data=custom_data
            )
            results = execute_send(sync_conn, prepared, self._target.hooks)
            callback = as_async_callback(on_complete)
            if callback is not None:  # a rolled-back batch is dropped by the watcher later
                self.runtime.run(
                    self._target.watch_batch, domain, batch_id, callback, must_exist=False
                )
            return BatchResult(batch_id, prepared.domain, len(results), results)
        return self.runtime.run(
            self._target.create_batch,
            domain,
            commands,
            name=name,
            custom_data=custom_data,
            on_complete=as_async_callback(on_complete),
        )

    def watch_batch(
        self,
        domain: str,
        batch_id: uuid.UUID,
        on_complete: Callable[[BatchInfo], Awaitable[object] | object],
        *,
        must_exist: bool = True,
    ) -> None:
        """Blocking :meth:`CommandBus.watch_batch`; ``on_complete`` may be a plain ``def``."""
        callback = as_async_callback(on_complete)
        assert callback is not None
        self.runtime.run(
            self._target.watch_batch, domain, batch_id, callback, must_exist=must_exist
        )

    async def _aclose(self) -> None:
        try:
            await self._target.close()
        finally:
            await super()._aclose()
