"""TroubleshootingQueue: what operators see and do with commands that need a human.

Every action locks the command row first, so two operators acting at once cannot both
succeed: the second waits, then finds the command no longer parked.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._channels import command_channel, reply_channel
from commandbus._db import execute, fetch_all, fetch_one
from commandbus._errors import CommandNotFoundError, InvalidOperationError, ValidationError
from commandbus._store import fetch_troubleshooting_items
from commandbus._validation import (
    check_name,
    check_paging,
    check_schema,
    dump_json_object,
    require_uuid,
)
from commandbus.models import CommandStatus, ReplyOutcome, TroubleshootingItem

__all__ = ["TroubleshootingQueue"]

log = logging.getLogger("commandbus.troubleshooting")

_PARKED = CommandStatus.IN_TROUBLESHOOTING_QUEUE


class TroubleshootingQueue:
    def __init__(self, pool: AsyncConnectionPool, *, schema: str = "commandbus") -> None:
        self.pool = pool
        self.schema = check_schema(schema)

    # -- reading -------------------------------------------------------------------

    async def list_troubleshooting(
        self, domain: str, *, command_type: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[TroubleshootingItem]:
        return await self._list(check_name("domain", domain), command_type, limit, offset)

    async def list_all_troubleshooting(
        self, *, limit: int = 50, offset: int = 0
    ) -> list[TroubleshootingItem]:
        return await self._list(None, None, limit, offset)

    async def list_domains(self) -> list[str]:
        """Domains that have commands waiting for an operator."""
        rows = await self._fetch("troubleshooting_domains", {})
        return [row[0] for row in rows]

    async def count_troubleshooting(self, domain: str | None = None) -> int:
        params = {"domain": None if domain is None else check_name("domain", domain)}
        rows = await self._fetch("count_troubleshooting", params)
        return int(rows[0][0])

    # -- operator actions ----------------------------------------------------------

    async def operator_retry(
        self, domain: str, command_id: uuid.UUID, *, operator: str | None = None
    ) -> None:
        """Give the command a fresh attempt budget and deliver it again now."""
        params = self._target(domain, command_id, operator)
        params["channel"] = command_channel(self.schema, params["domain"])
        async with self.pool.connection() as conn, conn.transaction():
            await self._lock_parked(conn, params)
            await execute(conn, _sql.query("operator_retry", self.schema), params)
        _log_action("OPERATOR_RETRY", params)

    async def operator_cancel(
        self, domain: str, command_id: uuid.UUID, *, reason: str, operator: str | None = None
    ) -> None:
        """End the command as CANCELED; its reply_to queue gets a CANCELED reply."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError("reason", "a cancel needs a non-empty reason")
        params = self._target(domain, command_id, operator)
        params.update(
            status=CommandStatus.CANCELED.value,
            outcome=ReplyOutcome.CANCELED.value,
            event_type="OPERATOR_CANCEL",
            result=None,
            reason=reason,
            error_code="CANCELED",
        )
        await self._resolve(params)

    async def operator_complete(
        self,
        domain: str,
        command_id: uuid.UUID,
        *,
        result: dict[str, Any] | None = None,
        operator: str | None = None,
    ) -> None:
        """End the command as COMPLETED with ``result``; its reply_to queue gets SUCCESS."""
        params = self._target(domain, command_id, operator)
        params.update(
            status=CommandStatus.COMPLETED.value,
            outcome=ReplyOutcome.SUCCESS.value,
            event_type="OPERATOR_COMPLETE",
            result=None if result is None else dump_json_object("result", result),
            reason=None,
            error_code=None,
        )
        await self._resolve(params)

    # -- helpers -------------------------------------------------------------------

    async def _resolve(self, params: dict[str, Any]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            reply_to = await self._lock_parked(conn, params)
            params["channel"] = reply_channel(self.schema, reply_to) if reply_to else ""
            await execute(conn, _sql.query("operator_resolve", self.schema), params)
        _log_action(params["event_type"], params)

    async def _lock_parked(self, conn: AsyncConnection, params: dict[str, Any]) -> str | None:
        """Lock the row; raise unless it is (still) in the troubleshooting queue."""
        row = await fetch_one(conn, _sql.query("lock_command", self.schema), params)
        if row is None:
            raise CommandNotFoundError(params["domain"], params["command_id"])
        if row[0] != _PARKED:
            raise InvalidOperationError(
                f"command {params['command_id']} in domain {params['domain']!r} is {row[0]}, "
                "not in the troubleshooting queue"
            )
        reply_to: str | None = row[1]
        return reply_to

    @staticmethod
    def _target(domain: str, command_id: uuid.UUID, operator: str | None) -> dict[str, Any]:
        if operator is not None and not isinstance(operator, str):
            raise ValidationError("operator", "must be a string or None")
        return {
            "domain": check_name("domain", domain),
            "command_id": require_uuid("command_id", command_id),
            "operator": operator,
        }

    async def _list(
        self, domain: str | None, command_type: str | None, limit: int, offset: int
    ) -> list[TroubleshootingItem]:
        params = {
            "domain": domain,
            "command_type": None
            if command_type is None
            else check_name("command_type", command_type),
            **check_paging(limit, offset),
        }
        async with self.pool.connection() as conn:
            return await fetch_troubleshooting_items(conn, self.schema, params)

    async def _fetch(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            return await fetch_all(conn, _sql.query(name, self.schema), params)


def _log_action(event_type: str, params: dict[str, Any]) -> None:
    """One INFO record per operator action, committed, with the command's fields."""
    log.info(
        "%s: operator %s on command %s in domain %r%s",
        event_type,
        params["operator"],
        params["command_id"],
        params["domain"],
        f" ({params['reason']})" if params.get("reason") else "",
        extra={
            "domain": params["domain"],
            "command_id": str(params["command_id"]),
            "operator": params["operator"],
            "outcome": event_type,
        },
    )
