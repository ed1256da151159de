"""The send path every sender shares: :class:`~commandbus.CommandBus`, batches, process
managers and their reply router, and the sync companion's outbox path.

Prepare (pure: :mod:`commandbus._send`), write inside the hooks' middleware, tell the
hooks. One implementation, so no sender can skip a rule (size caps, duplicate ids,
tracing) another applies; settings are read from the bus at each send, so a bus whose
hooks are swapped (inline test mode) is honoured.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation

from commandbus._db import autocommit_connection, execute, fetch_all, transaction
from commandbus._send import PreparedSend, prepare_send
from commandbus.hooks import CommandSent
from commandbus.models import SendRequest, SendResult

if TYPE_CHECKING:
    from commandbus.bus import CommandBus

__all__ = ["Sender"]


class Sender:
    """Writes commands for one bus (its pool, schema, defaults and hooks)."""

    def __init__(self, bus: CommandBus) -> None:
        self._bus = bus

    def prepare(
        self, requests: Sequence[SendRequest], *, batch_id: uuid.UUID | None = None
    ) -> PreparedSend:
        """The statement and parameters for ``requests`` (no I/O: the sync outbox path
        runs the very same statement on its own connection)."""
        bus = self._bus
        return prepare_send(
            requests,
            schema=bus.schema,
            default_max_attempts=bus.default_max_attempts,
            batch_id=batch_id,
            max_data_bytes=bus.max_data_bytes,
        )

    async def send(
        self,
        requests: Sequence[SendRequest],
        *,
        conn: AsyncConnection | None,
        batch_id: uuid.UUID | None = None,
    ) -> list[SendResult]:
        """Prepare, write and tell the hooks: a plain send's whole path."""
        results = await self.write(self.prepare(requests, batch_id=batch_id), conn)
        if self._bus.hooks:
            await self.sent(requests, results, in_callers_transaction=conn is not None)
        return results

    async def write(self, prepared: PreparedSend, conn: AsyncConnection | None) -> list[SendResult]:
        """Write a prepared send (every async send path ends here), inside the hooks'
        middleware; in ``conn``'s transaction if given, else on the bus's pool."""
        hooks = self._bus.hooks
        if not hooks.wraps:  # the common case: no generator context per send
            return await self._write(prepared, conn)
        with prepared.wrapped(hooks) as wrapped:
            return await self._write(wrapped, conn)

    async def sent(
        self,
        requests: Sequence[SendRequest],
        results: Sequence[SendResult],
        *,
        in_callers_transaction: bool,
    ) -> None:
        """Tell the hooks about commands written (the sync outbox path calls this too,
        after writing on the caller's own connection)."""
        hooks = self._bus.hooks
        for request, result in zip(requests, results, strict=True):
            await hooks.emit(
                CommandSent(
                    request.domain,
                    request.command_type,
                    result.command_id,
                    result.msg_id,
                    request.priority,
                    in_callers_transaction,
                )
            )

    async def _write(
        self, prepared: PreparedSend, conn: AsyncConnection | None
    ) -> list[SendResult]:
        pool = self._bus.pool
        if conn is not None or prepared.prelude:
            async with transaction(pool, conn) as tx:
                for query, params in prepared.prelude:
                    await execute(tx, query, params)
                return prepared.results(await fetch_all(tx, prepared.query, prepared.params))
        # On our own, the statement is the transaction: one round trip, all or nothing.
        async with autocommit_connection(pool) as own:
            try:
                rows = await fetch_all(own, prepared.atomic_query, prepared.params)
            except UniqueViolation as exc:
                if not prepared.is_duplicate(exc):
                    raise
                taken = await fetch_all(own, prepared.existing_query, prepared.params)
                error = prepared.duplicate_error(taken)
                if error is None:  # the taken row is gone again: report what PostgreSQL said
                    raise
                raise error from None
            return prepared.results(rows)
