"""CommandBus: durable, idempotent, optionally transactional sending, and queries."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus import _store, batches
from commandbus._batch_watcher import BatchWatcher
from commandbus._channels import reply_channel
from commandbus._db import autocommit_connection
from commandbus._errors import BatchNotFoundError, CommandNotFoundError, InvalidOperationError
from commandbus._sender import Sender
from commandbus._store import fetch_audit_events, fetch_commands
from commandbus._validation import (
    DEFAULT_MAX_DATA_BYTES,
    OWN_POOL,
    OwnPool,
    check_conn,
    check_datetime,
    check_max_attempts,
    check_max_data_bytes,
    check_name,
    check_paging,
    check_schema,
    check_status,
    check_text,
    require_uuid,
)
from commandbus.batches import OnBatchComplete
from commandbus.hooks import Hook, Hooks
from commandbus.models import (
    AuditEvent,
    BatchCommand,
    BatchInfo,
    BatchResult,
    BatchStatus,
    CommandMetadata,
    CommandStatus,
    SendRequest,
    SendResult,
)

log = logging.getLogger("commandbus.bus")

#: Statuses nothing can change any more.
_FINISHED = (CommandStatus.COMPLETED, CommandStatus.FAILED, CommandStatus.CANCELED)

__all__ = ["CommandBus"]


class CommandBus:
    """Sends commands and reads their state.

    ``send(..., conn=c)`` writes inside the caller's transaction (outbox pattern): the
    command becomes deliverable exactly when the caller commits.

    ``conn`` left out, the bus writes on its own pool and commits at once; ``conn=None``
    said explicitly is refused (it usually means a transaction that was not there).
    ``max_data_bytes`` caps each command's ``data`` (bytes of JSON; None: no cap of ours),
    checked before anything is sent.

    A bus that was given batch ``on_complete`` callbacks runs one background task that
    watches those batches; stop it with ``await bus.close()`` or ``async with bus:``.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        schema: str = "commandbus",
        default_max_attempts: int = 3,
        hooks: Sequence[Hook] | None = None,
        max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES,
    ) -> None:
        self.pool = pool
        self.schema = check_schema(schema)
        self.default_max_attempts = check_max_attempts(
            default_max_attempts, 3, "default_max_attempts"
        )
        #: Largest ``data`` of a command, in bytes of JSON (None: only PostgreSQL's limit).
        self.max_data_bytes = check_max_data_bytes(max_data_bytes)
        self._batch_watcher: BatchWatcher | None = None
        #: Callables that see each command sent (see :mod:`commandbus.hooks`).
        self.hooks = Hooks(hooks)
        #: The send path this bus writes with; batches, process managers, their router
        #: and the sync companion send through it too (see ``commandbus._sender``).
        self.sender = Sender(self)

    async def close(self) -> None:
        """Stop the batch watcher, if any; pending ``on_complete`` callbacks are dropped.

        The pool is the caller's and stays open. Batches keep their state in the
        database: ``get_batch`` still tells, and ``watch_batch`` can attach again (a
        callback cancelled while running counts as run: its batch was claimed).
        """
        if self._batch_watcher is not None:
            await self._batch_watcher.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(
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
        conn: AsyncConnection | OwnPool = OWN_POOL,
        priority: int = 0,
    ) -> SendResult:
        """Send one command; raises ``DuplicateCommandError`` if its id was used in the domain.

        ``priority`` 0 (the default) runs first and 9 last; among equal priorities, the
        command due first runs first, then the one sent first.
        """
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
        (result,) = await self.send_batch([request], conn=conn)
        return result

    async def send_batch(
        self, requests: Sequence[SendRequest], *, conn: AsyncConnection | OwnPool = OWN_POOL
    ) -> list[SendResult]:
        """Send many commands in one transaction and one statement; all or nothing."""
        return await self.sender.send(requests, conn=check_conn(conn, sync=False))

    async def cancel(
        self,
        domain: str,
        command_id: uuid.UUID,
        *,
        reason: str,
        operator: str | None = None,
    ) -> CommandStatus:
        """Cancel a command; returns ``CANCELED``, or ``IN_PROGRESS`` if it is running.

        A command that is not running (pending, delayed, waiting for a retry, or in the
        troubleshooting queue) ends CANCELED now, with a CANCELED reply to its
        ``reply_to`` and an ``OPERATOR_CANCEL`` audit event naming ``operator`` and
        ``reason``. A running one gets a cancel request that its worker acts on within a
        second: an async handler is cancelled at its next await, a plain ``def`` one sees
        ``ctx.cancel_requested``; the attempt is then recorded CANCELED the same way (and
        its writes on ``ctx.conn``/``ctx.sync_conn`` roll back). Raises
        ``CommandNotFoundError``, or ``InvalidOperationError`` for a finished command.
        """
        params: dict[str, Any] = {
            "domain": check_name("domain", domain),
            "command_id": require_uuid("command_id", command_id),
            "reason": check_text("reason", reason, optional=False),
            "operator": check_text("operator", operator, optional=True),
        }
        async with self.pool.connection() as conn, conn.transaction():
            locked = await _store.lock_command(
                conn, self.schema, params["domain"], params["command_id"]
            )
            if locked is None:
                raise CommandNotFoundError(params["domain"], params["command_id"])
            status, reply_to = locked
            if status in _FINISHED:
                raise InvalidOperationError(
                    f"command {command_id} in domain {domain!r} is {status}: it cannot be canceled"
                )
            params["channel"] = reply_channel(self.schema, reply_to) if reply_to else ""
            await _store.cancel_command(conn, self.schema, params)
        log.info(
            "command %s in domain %r: %s by %s (%s)",
            command_id,
            domain,
            "cancel requested" if status == CommandStatus.IN_PROGRESS else "canceled",
            operator,
            reason,
            extra={
                "domain": params["domain"],
                "command_id": str(command_id),
                "operator": operator,
                "outcome": "OPERATOR_CANCEL",
            },
        )
        return (
            CommandStatus.IN_PROGRESS
            if status == CommandStatus.IN_PROGRESS
            else (CommandStatus.CANCELED)
        )

    async def get_command(self, domain: str, command_id: uuid.UUID) -> CommandMetadata | None:
        params = {
            "domain": check_name("domain", domain),
            "command_id": require_uuid("command_id", command_id),
        }
        async with autocommit_connection(self.pool) as conn:
            rows = await fetch_commands(conn, "get_command", self.schema, params)
        return rows[0] if rows else None

    async def query_commands(
        self,
        *,
        domain: str | None = None,
        status: CommandStatus | str | None = None,
        command_type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[CommandMetadata]:
        """Commands matching every given filter, newest first."""
        params = {
            "domain": None if domain is None else check_name("domain", domain),
            "status": None if status is None else check_status(status),
            "command_type": None
            if command_type is None
            else check_name("command_type", command_type),
            "created_after": check_datetime("created_after", created_after),
            "created_before": check_datetime("created_before", created_before),
            **check_paging(limit, offset),
        }
        async with autocommit_connection(self.pool) as conn:
            return await fetch_commands(conn, "query_commands", self.schema, params)

    async def get_audit_trail(
        self, command_id: uuid.UUID, *, domain: str | None = None
    ) -> list[AuditEvent]:
        """Every state change of a command, oldest first."""
        params = {
            "command_id": require_uuid("command_id", command_id),
            "domain": None if domain is None else check_name("domain", domain),
        }
        async with autocommit_connection(self.pool) as conn:
            return await fetch_audit_events(conn, self.schema, params)

    # -- batches -------------------------------------------------------------------

    async def create_batch(
        self,
        domain: str,
        commands: Sequence[BatchCommand | SendRequest],
        *,
        name: str | None = None,
        custom_data: dict[str, Any] | None = None,
        conn: AsyncConnection | OwnPool = OWN_POOL,
        on_complete: OnBatchComplete | None = None,
    ) -> BatchResult:
        """Send ``commands`` as one tracked batch, in one transaction (all or nothing).

        ``commands`` are :class:`BatchCommand` (they take ``domain``) or
        :class:`SendRequest` whose domain is ``domain``. ``on_complete`` is awaited once,
        in this process, when the batch reaches a terminal status (see ``watch_batch``).
        """
        result = await batches.create_batch(
            self,
            domain,
            commands,
            name=name,
            custom_data=custom_data,
            conn=check_conn(conn, sync=False),
        )
        if on_complete is not None:
            self._watcher().watch(result.batch_id, on_complete)
        return result

    async def get_batch(self, domain: str, batch_id: uuid.UUID) -> BatchInfo | None:
        """The batch with counters counted from its commands now; None if unknown."""
        return await batches.get_batch(self.pool, self.schema, domain, batch_id)

    async def list_batches(
        self,
        domain: str,
        *,
        status: BatchStatus | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[BatchInfo]:
        """A domain's batches, newest first, optionally only those of one status."""
        return await batches.list_batches(
            self.pool, self.schema, domain, status=status, limit=limit, offset=offset
        )

    async def list_batch_commands(
        self,
        domain: str,
        batch_id: uuid.UUID,
        *,
        status: CommandStatus | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[CommandMetadata]:
        """A page of a batch's commands; ``BatchNotFoundError`` for an unknown batch."""
        return await batches.list_batch_commands(
            self.pool, self.schema, domain, batch_id, status=status, limit=limit, offset=offset
        )

    async def watch_batch(
        self,
        domain: str,
        batch_id: uuid.UUID,
        on_complete: OnBatchComplete,
        *,
        must_exist: bool = True,
    ) -> None:
        """Run ``on_complete`` when the batch is (or becomes) terminal.

        Useful after a restart: the process that created the batch is gone, its state is
        in the database. A batch's callbacks run at most once across all processes: the
        first watcher to claim the terminal batch runs them; others skip.

        ``must_exist=False`` watches a batch written in a transaction that may not have
        committed yet (as ``create_batch(conn=...)`` does): instead of
        ``BatchNotFoundError``, a batch that never appears is dropped after a grace period.
        """
        if must_exist and await self.get_batch(domain, batch_id) is None:
            raise BatchNotFoundError(domain, batch_id)
        self._watcher().watch(batch_id, on_complete)

    def _watcher(self) -> BatchWatcher:
        if self._batch_watcher is None:
            self._batch_watcher = BatchWatcher(self.pool, self.schema)
        return self._batch_watcher
