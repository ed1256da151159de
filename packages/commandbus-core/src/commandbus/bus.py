"""CommandBus: durable, idempotent, optionally transactional sending, and queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._db import transaction
from commandbus._rows import audit_event, command_metadata
from commandbus._send import PreparedSend, prepare_send
from commandbus._validation import (
    check_max_attempts,
    check_name,
    check_paging,
    check_schema,
    check_status,
    require_uuid,
)
from commandbus.models import AuditEvent, CommandMetadata, CommandStatus, SendRequest, SendResult

__all__ = ["CommandBus"]


class CommandBus:
    """Sends commands and reads their state.

    ``send(..., conn=c)`` writes inside the caller's transaction (outbox pattern): the
    command becomes deliverable exactly when the caller commits.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        schema: str = "commandbus",
        default_max_attempts: int = 3,
    ) -> None:
        self.pool = pool
        self.schema = check_schema(schema)
        self.default_max_attempts = check_max_attempts(default_max_attempts, 3)

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
        conn: AsyncConnection | None = None,
    ) -> SendResult:
        """Send one command; raises ``DuplicateCommandError`` if its id was used in the domain."""
        request = SendRequest(
            domain, command_type, command_id, data, correlation_id, reply_to, max_attempts, delay
        )
        (result,) = await self.send_batch([request], conn=conn)
        return result

    async def send_batch(
        self, requests: Sequence[SendRequest], *, conn: AsyncConnection | None = None
    ) -> list[SendResult]:
        """Send many commands in one transaction and one statement; all or nothing."""
        return await self._send(requests, conn=conn)

    async def _send(
        self,
        requests: Sequence[SendRequest],
        *,
        conn: AsyncConnection | None,
        batch_id: uuid.UUID | None = None,
    ) -> list[SendResult]:
        prepared = prepare_send(
            requests,
            schema=self.schema,
            default_max_attempts=self.default_max_attempts,
            batch_id=batch_id,
        )
        return await self._execute_send(prepared, conn)

    async def _execute_send(
        self, prepared: PreparedSend, conn: AsyncConnection | None
    ) -> list[SendResult]:
        async with transaction(self.pool, conn) as tx:
            cur = await tx.execute(prepared.query, prepared.params)
            return prepared.results(await cur.fetchall())

    async def get_command(self, domain: str, command_id: uuid.UUID) -> CommandMetadata | None:
        params = {
            "domain": check_name("domain", domain),
            "command_id": require_uuid("command_id", command_id),
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(_sql.query("get_command", self.schema), params)
            row = await cur.fetchone()
        return None if row is None else command_metadata(row)

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
            "created_after": created_after,
            "created_before": created_before,
            **check_paging(limit, offset),
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(_sql.query("query_commands", self.schema), params)
            return [command_metadata(row) for row in await cur.fetchall()]

    async def get_audit_trail(
        self, command_id: uuid.UUID, *, domain: str | None = None
    ) -> list[AuditEvent]:
        """Every state change of a command, oldest first."""
        params = {
            "command_id": require_uuid("command_id", command_id),
            "domain": None if domain is None else check_name("domain", domain),
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(_sql.query("get_audit_trail", self.schema), params)
            return [audit_event(row) for row in await cur.fetchall()]
