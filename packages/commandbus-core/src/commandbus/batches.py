"""Batches: many commands sent as one tracked group.

A batch is a row in ``batches`` plus commands carrying its ``batch_id``. Its counters and
status are never stored: every read counts the commands by status (view
``batch_summary``, an index-only scan of ``commands_batch_idx``). Completing a command
therefore touches no shared row, and operator actions are reflected by construction: a
retried command counts as pending again, a canceled one as canceled.

:class:`~commandbus.CommandBus` exposes these functions as methods; this module holds
the rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._db import fetch_all, fetch_one
from commandbus._errors import BatchNotFoundError, ValidationError
from commandbus._send import PreparedSend
from commandbus._store import fetch_commands
from commandbus._validation import (
    check_name,
    check_paging,
    check_status,
    check_text,
    dump_json_object,
    require_uuid,
)
from commandbus.models import (
    BatchCommand,
    BatchInfo,
    BatchResult,
    BatchStatus,
    CommandMetadata,
    SendRequest,
)

if TYPE_CHECKING:
    from commandbus.bus import CommandBus

__all__ = [
    "OnBatchComplete",
    "batch_requests",
    "create_batch",
    "fetch_batches",
    "get_batch",
    "list_batch_commands",
    "list_batches",
    "prepare_batch",
]

#: An ``on_complete`` callback: awaited once with the batch's terminal :class:`BatchInfo`.
OnBatchComplete = Callable[[BatchInfo], Awaitable[object]]

MAX_BATCH_NAME_LENGTH = 256


def batch_requests(
    domain: str, commands: Sequence[BatchCommand | SendRequest]
) -> list[SendRequest]:
    """The batch's commands as send requests in ``domain`` (validated by the send path)."""
    if isinstance(commands, str | bytes) or not isinstance(commands, Sequence):
        raise ValidationError("commands", "must be a list of BatchCommand or SendRequest")
    if not commands:
        raise ValidationError("commands", "a batch needs at least one command")
    requests = []
    for index, cmd in enumerate(commands):
        if isinstance(cmd, BatchCommand):
            requests.append(
                SendRequest(
                    domain,
                    cmd.command_type,
                    cmd.command_id,
                    cmd.data,
                    cmd.correlation_id,
                    cmd.reply_to,
                    cmd.max_attempts,
                    priority=cmd.priority,
                )
            )
        elif isinstance(cmd, SendRequest):
            if cmd.domain != domain:
                raise ValidationError(
                    f"commands[{index}].domain",
                    f"{cmd.domain!r} differs from the batch's domain {domain!r}",
                )
            requests.append(cmd)
        else:
            raise ValidationError(
                f"commands[{index}]",
                f"must be a BatchCommand or SendRequest, got {type(cmd).__name__}",
            )
    return requests


def prepare_batch(
    bus: CommandBus,
    domain: str,
    commands: Sequence[BatchCommand | SendRequest],
    *,
    name: str | None = None,
    custom_data: dict[str, Any] | None = None,
) -> tuple[uuid.UUID, PreparedSend]:
    """Validate a batch; the send that writes its row and all its commands (no I/O here,
    so the sync outbox path runs the very same statements on its own connection)."""
    domain = check_name("domain", domain)
    if name is not None:
        name = str(check_text("name", name, optional=False))  # the one check of free text
        if len(name) > MAX_BATCH_NAME_LENGTH:
            raise ValidationError("name", f"must be at most {MAX_BATCH_NAME_LENGTH} characters")
    data = None if custom_data is None else dump_json_object("custom_data", custom_data)
    requests = batch_requests(domain, commands)
    batch_id = uuid.uuid4()
    params = {
        "batch_id": batch_id,
        "domain": domain,
        "name": name,
        "custom_data": data,
        "total": len(requests),
    }
    prepared = bus.sender.prepare(requests, batch_id=batch_id)
    return batch_id, prepared.after(_sql.query("batch_create", bus.schema), params)


async def create_batch(
    bus: CommandBus,
    domain: str,
    commands: Sequence[BatchCommand | SendRequest],
    *,
    name: str | None = None,
    custom_data: dict[str, Any] | None = None,
    conn: AsyncConnection | None = None,
) -> BatchResult:
    """Write the batch row and all its commands in one transaction (all or nothing)."""
    batch_id, prepared = prepare_batch(bus, domain, commands, name=name, custom_data=custom_data)
    results = await bus.sender.write(prepared, conn)
    return BatchResult(batch_id, prepared.domain, len(results), results)


async def fetch_batches(
    pool: AsyncConnectionPool,
    schema: str,
    batch_ids: Sequence[uuid.UUID],
    *,
    domain: str | None = None,
) -> list[tuple[BatchInfo, bool]]:
    """``(info, claimed)`` for each existing batch; ``claimed``: its callback was taken."""
    params = {"batch_ids": list(batch_ids), "domain": domain}
    async with pool.connection() as conn:
        rows = await fetch_all(conn, _sql.query("batch_get", schema), params)
        return [(_batch_info(row), bool(row[14])) for row in rows]


async def get_batch(
    pool: AsyncConnectionPool, schema: str, domain: str, batch_id: uuid.UUID
) -> BatchInfo | None:
    domain = check_name("domain", domain)
    found = await fetch_batches(pool, schema, [require_uuid("batch_id", batch_id)], domain=domain)
    return found[0][0] if found else None


async def list_batches(
    pool: AsyncConnectionPool,
    schema: str,
    domain: str,
    *,
    status: BatchStatus | str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[BatchInfo]:
    params = {
        "domain": check_name("domain", domain),
        "status": None if status is None else _check_batch_status(status),
        **check_paging(limit, offset),
    }
    async with pool.connection() as conn:
        rows = await fetch_all(conn, _sql.query("batch_list", schema), params)
        return [_batch_info(row) for row in rows]


async def list_batch_commands(
    pool: AsyncConnectionPool,
    schema: str,
    domain: str,
    batch_id: uuid.UUID,
    *,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[CommandMetadata]:
    """A page of the batch's commands; raises ``BatchNotFoundError`` for an unknown batch."""
    domain = check_name("domain", domain)
    batch_id = require_uuid("batch_id", batch_id)
    params = {
        "domain": domain,
        "batch_id": batch_id,
        "status": None if status is None else check_status(status),
        **check_paging(limit, offset),
    }
    async with pool.connection() as conn:
        rows = await fetch_commands(conn, "batch_commands", schema, params)
        exists = _sql.query("batch_exists", schema)
        if not rows and await fetch_one(conn, exists, params) is None:
            raise BatchNotFoundError(domain, batch_id)
    return rows


def _check_batch_status(value: object) -> str:
    try:
        return BatchStatus(str(value)).value
    except ValueError:
        allowed = ", ".join(s.value for s in BatchStatus)
        raise ValidationError("status", f"{value!r} is not one of {allowed}") from None


def _batch_info(row: Sequence[Any]) -> BatchInfo:
    """Map a row in the column order of ``batch_get.sql``."""
    return BatchInfo(
        batch_id=row[0],
        domain=row[1],
        name=row[2],
        custom_data=row[3],
        total=row[4],
        pending=row[5],
        in_progress=row[6],
        completed=row[7],
        failed=row[8],
        canceled=row[9],
        in_troubleshooting=row[10],
        status=BatchStatus(row[11]),
        created_at=row[12],
        completed_at=row[13],
    )
