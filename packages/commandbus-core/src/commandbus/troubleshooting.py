"""TroubleshootingQueue: what operators see and do with commands that need a human.

Every action locks the command row first, so two operators acting at once cannot both
succeed: the second waits, then finds the command no longer parked. The bulk actions
(:meth:`~TroubleshootingQueue.retry_many` and friends) lock the same way, chunk by chunk
(see ``_tsq_bulk``), so a bulk action, single actions and running workers can overlap.
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
from commandbus._store import (
    fetch_audit_events,
    fetch_command_detail,
    fetch_error_groups,
    fetch_parked_items,
    fetch_troubleshooting_items,
)
from commandbus._tsq_bulk import BulkAction, run_bulk
from commandbus._tsq_filter import check_limit, cursor_params, filter_params
from commandbus._tsq_types import (
    BulkResult,
    ErrorGroup,
    PickedRow,
    TroubleshootingCursor,
    TroubleshootingDetail,
    TroubleshootingFilter,
    TroubleshootingPage,
    page_of,
)
from commandbus._validation import (
    check_name,
    check_paging,
    check_schema,
    check_text,
    dump_json_object,
    require_uuid,
)
from commandbus.models import CommandStatus, ReplyOutcome, TroubleshootingItem

__all__ = [
    "BulkResult",
    "ErrorGroup",
    "TroubleshootingCursor",
    "TroubleshootingDetail",
    "TroubleshootingFilter",
    "TroubleshootingPage",
    "TroubleshootingQueue",
]

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
        self,
        domain: str,
        command_id: uuid.UUID,
        *,
        operator: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Give the command a fresh attempt budget and deliver it again now."""
        params = self._target(domain, command_id, operator, reason)
        params["channel"] = command_channel(self.schema, params["domain"])
        async with self.pool.connection() as conn, conn.transaction():
            await self._lock_parked(conn, params)
            await execute(conn, _sql.query("operator_retry", self.schema), params)
        _log_action("OPERATOR_RETRY", params)

    async def operator_cancel(
        self, domain: str, command_id: uuid.UUID, *, reason: str, operator: str | None = None
    ) -> None:
        """End the command as CANCELED; its reply_to queue gets a CANCELED reply."""
        _require_reason(reason)
        params = self._target(domain, command_id, operator, reason)
        params.update(_cancel_params(params["reason"]))
        await self._resolve(params)

    async def operator_complete(
        self,
        domain: str,
        command_id: uuid.UUID,
        *,
        result: dict[str, Any] | None = None,
        operator: str | None = None,
        reason: str | None = None,
    ) -> None:
        """End the command as COMPLETED with ``result``; its reply_to queue gets SUCCESS."""
        params = self._target(domain, command_id, operator, reason)
        params.update(_complete_params(result))
        await self._resolve(params)

    # -- many commands at once -----------------------------------------------------

    async def retry_many(
        self,
        where: TroubleshootingFilter,
        *,
        operator: str,
        reason: str | None = None,
        limit: int | None = None,
        dry_run: bool = False,
    ) -> BulkResult:
        """:meth:`operator_retry` every parked command ``where`` matches (newest parked
        first, at most ``limit``); workers of each domain are woken once per chunk.

        ``where`` must set at least one criterion: an empty filter would retry every
        parked command of every domain (pass ``domain=`` to mean a whole domain).
        ``operator`` is required and, with ``reason``, goes into each command's audit
        event. Only commands parked when the call starts are acted on, each at most
        once, even if it fails and is parked again during the call. ``dry_run`` returns
        what would be retried and writes nothing. Work is committed in chunks of 1,000
        commands (see ``commandbus._tsq_bulk`` for why).
        """
        params = self._bulk_params(where, operator, reason, limit, dry_run)
        schema = self.schema
        action = BulkAction(
            "OPERATOR_RETRY",
            "tsq_retry_many",
            params,
            lambda rows: sorted({command_channel(schema, row.domain) for row in rows}),
        )
        return await self._run_bulk(action, where, limit, dry_run)

    async def cancel_many(
        self,
        where: TroubleshootingFilter,
        *,
        operator: str,
        reason: str,
        limit: int | None = None,
        dry_run: bool = False,
    ) -> BulkResult:
        """:meth:`operator_cancel` every parked command ``where`` matches; each reply_to
        queue gets a CANCELED reply carrying ``reason``. Same rules as :meth:`retry_many`."""
        _require_reason(reason)
        params = self._bulk_params(where, operator, reason, limit, dry_run)
        params.update(_cancel_params(params["reason"]))
        return await self._run_bulk(self._resolve_action(params), where, limit, dry_run)

    async def complete_many(
        self,
        where: TroubleshootingFilter,
        *,
        operator: str,
        result: dict[str, Any] | None = None,
        reason: str | None = None,
        limit: int | None = None,
        dry_run: bool = False,
    ) -> BulkResult:
        """:meth:`operator_complete` every parked command ``where`` matches, each with the
        same ``result``; each reply_to queue gets SUCCESS. Same rules as :meth:`retry_many`."""
        params = self._bulk_params(where, operator, reason, limit, dry_run)
        params.update(_complete_params(result))
        return await self._run_bulk(self._resolve_action(params), where, limit, dry_run)

    # -- searching -----------------------------------------------------------------

    async def summary(self, where: TroubleshootingFilter | None = None) -> list[ErrorGroup]:
        """Parked commands grouped by domain, command type, error type and error code,
        the biggest groups first: what broke, how often, since when."""
        params = filter_params(where, required=False)
        async with self.pool.connection() as conn:
            return await fetch_error_groups(conn, self.schema, params)

    async def find(
        self,
        where: TroubleshootingFilter | None = None,
        *,
        limit: int = 50,
        after: TroubleshootingCursor | None = None,
    ) -> TroubleshootingPage:
        """One page of parked commands matching ``where``, **newest parked first** (what
        just broke is what an operator looks at first; :meth:`list_troubleshooting`
        orders the same way). Pass the page's ``next`` as ``after`` for the next page;
        it is None on the last. Keyset pagination on an index of parked commands: every
        page costs the same, however deep, and nothing is counted."""
        params = {
            **filter_params(where, required=False),
            **cursor_params(after),
            "limit": check_paging(limit, 0)["limit"] + 1,
        }
        async with self.pool.connection() as conn:
            items = await fetch_parked_items(conn, self.schema, params)
        return page_of(items, limit)

    async def show(self, domain: str, command_id: uuid.UUID) -> TroubleshootingDetail:
        """One command with its data, result, last error, traceback and audit trail,
        whatever its status; :class:`CommandNotFoundError` if there is no such command."""
        domain = check_name("domain", domain)
        command_id = require_uuid("command_id", command_id)
        params = {"domain": domain, "command_id": command_id}
        async with self.pool.connection() as conn, conn.transaction():
            row = await fetch_command_detail(conn, self.schema, params)
            if row is None:
                raise CommandNotFoundError(domain, command_id)
            trail = await fetch_audit_events(conn, self.schema, params)
        return TroubleshootingDetail(
            **{**row, "status": CommandStatus(row["status"])}, audit_trail=trail
        )

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
    def _target(
        domain: str, command_id: uuid.UUID, operator: str | None, reason: str | None
    ) -> dict[str, Any]:
        return {
            "domain": check_name("domain", domain),
            "command_id": require_uuid("command_id", command_id),
            "operator": check_text("operator", operator, optional=True),
            "reason": check_text("reason", reason, optional=True),
        }

    @staticmethod
    def _bulk_params(
        where: object, operator: object, reason: object, limit: object, dry_run: object
    ) -> dict[str, Any]:
        """Check what every bulk action takes (the filter itself in :meth:`_run_bulk`)."""
        filter_params(where, required=True)
        check_limit(limit)
        if not isinstance(dry_run, bool):
            raise ValidationError("dry_run", f"must be a bool, got {type(dry_run).__name__}")
        return {
            "operator": check_text("operator", operator, optional=False),
            "reason": check_text("reason", reason, optional=True),
        }

    def _resolve_action(self, params: dict[str, Any]) -> BulkAction:
        schema = self.schema

        def channels(rows: list[PickedRow]) -> list[str]:
            return sorted({reply_channel(schema, row.reply_to) for row in rows if row.reply_to})

        return BulkAction(params["event_type"], "tsq_resolve_many", params, channels)

    async def _run_bulk(
        self, action: BulkAction, where: object, limit: object, dry_run: bool
    ) -> BulkResult:
        return await run_bulk(
            self.pool,
            self.schema,
            action,
            filter_params(where, required=True),
            limit=check_limit(limit),
            dry_run=dry_run,
        )

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


def _require_reason(reason: object) -> None:
    """A cancel says why (its reply carries the reason): the one text check, required."""
    check_text("reason", reason, optional=False)


def _cancel_params(reason: str) -> dict[str, Any]:
    """The resolve statement's parameters of a cancel: the reply carries the reason."""
    return {
        "status": CommandStatus.CANCELED.value,
        "outcome": ReplyOutcome.CANCELED.value,
        "event_type": "OPERATOR_CANCEL",
        "result": None,
        "reply_message": reason,
        "error_code": "CANCELED",
    }


def _complete_params(result: object) -> dict[str, Any]:
    """The resolve statement's parameters of a completion: a SUCCESS reply with ``result``
    (the operator's reason goes to the audit trail only)."""
    return {
        "status": CommandStatus.COMPLETED.value,
        "outcome": ReplyOutcome.SUCCESS.value,
        "event_type": "OPERATOR_COMPLETE",
        "result": None if result is None else dump_json_object("result", result),
        "reply_message": None,
        "error_code": None,
    }


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
