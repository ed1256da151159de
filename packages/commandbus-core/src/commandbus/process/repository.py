"""ProcessRepository: what operators and applications read about processes.

Statuses are derived when read (view ``process_summary``): a process waiting for a reply
whose command is in the troubleshooting queue, or whose reply was parked, is reported
WAITING_FOR_TSQ. Parked replies (the router's troubleshooting side) are listed and
acted upon here too.
"""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._channels import reply_channel
from commandbus._db import execute, fetch_all, fetch_one
from commandbus._errors import InvalidOperationError, ValidationError
from commandbus._validation import (
    MAX_BIGINT,
    check_int,
    check_name,
    check_paging,
    check_schema,
    check_text,
    require_uuid,
)
from commandbus.models import CommandStatus, ReplyOutcome
from commandbus.process.models import ParkedReply, ProcessAuditEntry, ProcessInfo, ProcessStatus

__all__ = ["ProcessRepository"]

log = logging.getLogger("commandbus.process")


class ProcessRepository:
    def __init__(self, pool: AsyncConnectionPool, *, schema: str = "commandbus") -> None:
        self.pool = pool
        self.schema = check_schema(schema)

    async def get(self, process_id: uuid.UUID) -> ProcessInfo | None:
        rows = await self._fetch(
            "process_get", {"process_id": require_uuid("process_id", process_id)}
        )
        return _process(rows[0]) if rows else None

    async def list(
        self,
        domain: str,
        *,
        process_type: str | None = None,
        status: ProcessStatus | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[ProcessInfo]:
        """A domain's processes, newest first; ``status`` filters on the derived status."""
        params = {
            "domain": check_name("domain", domain),
            "process_type": None
            if process_type is None
            else check_name("process_type", process_type),
            "status": None if status is None else _check_status(status),
            **check_paging(limit, offset),
        }
        return [_process(row) for row in await self._fetch("process_list", params)]

    async def get_audit_trail(self, process_id: uuid.UUID) -> builtins.list[ProcessAuditEntry]:
        """Every command the process sent, with its reply, and every reply it ignored."""
        params = {"process_id": require_uuid("process_id", process_id)}
        return [_audit(row) for row in await self._fetch("process_audit_trail", params)]

    # -- parked replies ------------------------------------------------------------

    async def list_parked_replies(
        self, *, queue: str | None = None, limit: int = 50, offset: int = 0
    ) -> builtins.list[ParkedReply]:
        """Replies routers set aside (unknown process or type, handling kept failing)."""
        params = {
            "queue": None if queue is None else check_name("queue", queue),
            **check_paging(limit, offset),
        }
        return [_parked(row) for row in await self._fetch("parked_replies_list", params)]

    async def retry_parked_reply(
        self, parked_id: int, *, operator: str, reason: str | None = None
    ) -> None:
        """Put a parked reply back on its queue, deliverable now with a fresh attempt budget.

        Do this once the cause is fixed (e.g. a router that knows the process type runs).
        Recorded in the audit trail of the command the reply answers
        (``OPERATOR_REPLY_RETRY``, with ``operator`` and ``reason``) and logged.
        """
        params = _action_params(parked_id, operator, reason, reason_required=False)
        async with self.pool.connection() as conn, conn.transaction():
            row = await fetch_one(conn, _sql.query("parked_reply_retry", self.schema), params)
            if row is None:
                raise InvalidOperationError(f"no parked reply {parked_id}")
            channel = reply_channel(self.schema, row[1])
            await execute(conn, _sql.query("notify", self.schema), {"channel": channel})
        _log_action("OPERATOR_REPLY_RETRY", params)

    async def discard_parked_reply(self, parked_id: int, *, operator: str, reason: str) -> None:
        """Drop a parked reply for good. A reason is required, as for a cancel: what the
        reply said is lost, and the audit trail of the command it answered
        (``OPERATOR_REPLY_DISCARD``) keeps who dropped it and why."""
        params = _action_params(parked_id, operator, reason, reason_required=True)
        if not await self._fetch("parked_reply_discard", params):
            raise InvalidOperationError(f"no parked reply {parked_id}")
        _log_action("OPERATOR_REPLY_DISCARD", params)

    async def _fetch(self, name: str, params: dict[str, Any]) -> builtins.list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            return await fetch_all(conn, _sql.query(name, self.schema), params)


def _check_status(value: object) -> str:
    try:
        return ProcessStatus(str(value)).value
    except ValueError:
        allowed = ", ".join(s.value for s in ProcessStatus)
        raise ValidationError("status", f"{value!r} is not one of {allowed}") from None


def _action_params(
    parked_id: object, operator: object, reason: object, *, reason_required: bool
) -> dict[str, Any]:
    """An operator's action on a parked reply: who (always) and why (required to discard)."""
    return {
        "parked_id": check_int("parked_id", parked_id, at_least=1, at_most=MAX_BIGINT),
        "operator": check_text("operator", operator, optional=False),
        "reason": check_text("reason", reason, optional=not reason_required),
    }


def _log_action(event_type: str, params: dict[str, Any]) -> None:
    """One INFO record per operator action on a parked reply, once committed."""
    log.info(
        "%s: operator %s on parked reply %d%s",
        event_type,
        params["operator"],
        params["parked_id"],
        f" ({params['reason']})" if params["reason"] else "",
        extra={
            "parked_id": params["parked_id"],
            "operator": params["operator"],
            "reason": params["reason"],
            "outcome": event_type,
        },
    )


def _process(row: Sequence[Any]) -> ProcessInfo:
    """Map a row in the column order of ``process_get.sql``."""
    return ProcessInfo(
        process_id=row[0],
        domain=row[1],
        process_type=row[2],
        status=ProcessStatus(row[3]),
        current_step=row[4],
        current_command_domain=row[5],
        current_command_id=row[6],
        current_command_status=None if row[7] is None else CommandStatus(row[7]),
        state=row[8],
        completed_steps=builtins.list(row[9]),
        compensation_steps=builtins.list(row[10]),
        error_code=row[11],
        error_message=row[12],
        created_at=row[13],
        updated_at=row[14],
        completed_at=row[15],
    )


def _audit(row: Sequence[Any]) -> ProcessAuditEntry:
    return ProcessAuditEntry(
        seq=row[0],
        process_id=row[1],
        entry_type=row[2],
        step=row[3],
        command_domain=row[4],
        command_id=row[5],
        command_type=row[6],
        command_data=row[7],
        sent_at=row[8],
        reply_outcome=None if row[9] is None else ReplyOutcome(row[9]),
        reply_data=row[10],
        error_code=row[11],
        error_message=row[12],
        received_at=row[13],
        note=row[14],
    )


def _parked(row: Sequence[Any]) -> ParkedReply:
    return ParkedReply(
        parked_id=row[0],
        queue=row[1],
        domain=row[2],
        command_id=row[3],
        command_type=row[4],
        correlation_id=row[5],
        outcome=ReplyOutcome(row[6]),
        result=row[7],
        error_code=row[8],
        error_message=row[9],
        read_count=row[10],
        enqueued_at=row[11],
        reason_code=row[12],
        reason=row[13],
        traceback=row[14],
        parked_at=row[15],
    )
