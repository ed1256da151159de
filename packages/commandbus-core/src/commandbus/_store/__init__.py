"""The store: the one layer that runs the statements in ``sql/queries``.

This package's ``__init__`` holds the command, worker and troubleshooting reads and
writes; each other area has its own module here (``_store/<area>.py``), imported by the
service that needs it. Every function takes the connection and the schema, binds its
parameters and returns typed rows mapped by column *name* (psycopg's ``kwargs_row``), so
a statement may order or add columns freely: no module indexes a row tuple, and the
pairing of ``sql/queries/<name>.sql`` with what it returns lives only here.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import dict_row, kwargs_row, tuple_row

from commandbus import _sql
from commandbus._db import execute, fetch_all, fetch_one, tuple_cursor
from commandbus._outcomes import Lease
from commandbus._tsq_types import ActedRow, ErrorGroup, PickedRow
from commandbus.models import (
    AuditEvent,
    Command,
    CommandMetadata,
    CommandStatus,
    TroubleshootingItem,
    WorkerInfo,
)

__all__ = [
    "ROW_TYPES",
    "act_on_parked",
    "cancel_command",
    "cancel_requests",
    "claim_batches",
    "declare_limits",
    "extend_lease",
    "fetch_audit_events",
    "fetch_command_detail",
    "fetch_commands",
    "fetch_error_groups",
    "fetch_parked_items",
    "fetch_troubleshooting_items",
    "fetch_workers",
    "finish",
    "heartbeat",
    "finish_sync",
    "lease_commands",
    "list_paused",
    "pause_domain",
    "resume_domain",
    "lock_command",
    "register_worker",
    "unregister_worker",
    "parked_match",
    "pick_parked",
]

T = TypeVar("T")


def _command_metadata(**row: Any) -> CommandMetadata:
    return CommandMetadata(**{**row, "status": CommandStatus(row["status"])})


#: statement name -> the model built from each of its rows, by column name.
ROW_TYPES: dict[str, Callable[..., Any]] = {
    "get_command": _command_metadata,
    "query_commands": _command_metadata,
    "batch_commands": _command_metadata,
    "console_find_commands": _command_metadata,
    "get_audit_trail": AuditEvent,
    "list_troubleshooting": TroubleshootingItem,
    "list_workers": WorkerInfo,
    # The troubleshooting queue's search (their WHERE is the tsq_filter.sql fragment).
    "tsq_find": TroubleshootingItem,
    "tsq_summary": ErrorGroup,
    "command_detail": dict,
    "tsq_pick": PickedRow,
    "tsq_retry_many": ActedRow,
    "tsq_resolve_many": ActedRow,
}


async def _fetch(
    conn: AsyncConnection[Any],
    name: str,
    schema: str,
    params: Any,
    model: Callable[..., T],
    **fragments: str,
) -> list[T]:
    if ROW_TYPES[name] is not model:
        raise TypeError(f"{name}.sql returns {ROW_TYPES[name]}, not {model}")
    async with AsyncCursor(conn, row_factory=kwargs_row(model)) as cur:
        await cur.execute(_sql.query(name, schema, **fragments), params)
        return await cur.fetchall()


async def fetch_commands(
    conn: AsyncConnection[Any], name: str, schema: str, params: Any
) -> list[CommandMetadata]:
    """Rows of ``get_command``, ``query_commands`` or ``batch_commands``."""
    return await _fetch(conn, name, schema, params, _command_metadata)


async def fetch_audit_events(
    conn: AsyncConnection[Any], schema: str, params: Any
) -> list[AuditEvent]:
    return await _fetch(conn, "get_audit_trail", schema, params, AuditEvent)


async def fetch_troubleshooting_items(
    conn: AsyncConnection[Any], schema: str, params: Any
) -> list[TroubleshootingItem]:
    return await _fetch(conn, "list_troubleshooting", schema, params, TroubleshootingItem)


async def fetch_workers(conn: AsyncConnection[Any], schema: str, params: Any) -> list[WorkerInfo]:
    return await _fetch(conn, "list_workers", schema, params, WorkerInfo)


def parked_match(schema: str) -> str:
    """The troubleshooting-queue predicate (``tsq_filter.sql``), as a ``match`` fragment."""
    return _sql.query("tsq_filter", schema).decode()


async def fetch_parked_items(
    conn: AsyncConnection[Any], schema: str, params: Any
) -> list[TroubleshootingItem]:
    """Rows of ``tsq_find``: one keyset page of parked commands."""
    return await _fetch(
        conn, "tsq_find", schema, params, TroubleshootingItem, match=parked_match(schema)
    )


async def fetch_error_groups(
    conn: AsyncConnection[Any], schema: str, params: Any
) -> list[ErrorGroup]:
    return await _fetch(conn, "tsq_summary", schema, params, ErrorGroup, match=parked_match(schema))


async def fetch_command_detail(
    conn: AsyncConnection[Any], schema: str, params: Any
) -> dict[str, Any] | None:
    """The ``command_detail`` row by column name, or None when there is no such command."""
    rows: list[dict[str, Any]] = await _fetch(conn, "command_detail", schema, params, dict)
    return rows[0] if rows else None


#: ``tsq_pick``'s lock placeholder: a real action locks its chunk, a dry run only reads.
_LOCK = {True: "FOR UPDATE OF c", False: ""}


async def pick_parked(
    conn: AsyncConnection[Any], schema: str, params: Any, *, lock: bool
) -> list[PickedRow]:
    """Rows of ``tsq_pick``: the next chunk of a bulk action (locked when ``lock``)."""
    return await _fetch(
        conn, "tsq_pick", schema, params, PickedRow, match=parked_match(schema), lock=_LOCK[lock]
    )


async def act_on_parked(
    conn: AsyncConnection[Any], name: str, schema: str, params: Any
) -> list[ActedRow]:
    """Rows of ``tsq_retry_many`` or ``tsq_resolve_many``: the commands acted on."""
    return await _fetch(conn, name, schema, params, ActedRow)


# -- the worker's statements -----------------------------------------------------------
# Hot paths: rows stay tuples (no per-row mapping object), but columns are still found
# by name, once per statement's result (see _columns).

_LEASE_COLUMNS = (
    "msg_id",
    "lease_id",
    "command_id",
    "command_type",
    "data",
    "correlation_id",
    "reply_to",
    "batch_id",
    "created_at",
    "attempts",
    "max_attempts",
    "forgiven",
    "trace_context",
    "cancel_requested",
    "expired",
    "ready_for",
)


def _columns(cur: AsyncCursor[Any] | Any, names: tuple[str, ...]) -> list[int]:
    """Positions of ``names`` in the cursor's result, so rows are read by column name."""
    index = {column.name: i for i, column in enumerate(cur.description or ())}
    return [index[name] for name in names]


async def lease_commands(
    conn: AsyncConnection[Any],
    schema: str,
    statement: str,
    params: dict[str, Any],
    *,
    limited: bool,
) -> tuple[list[Lease], bool]:
    """Lease with ``dequeue`` (or ``rescue``) in one round trip on an autocommit ``conn``;
    the leases and whether a lease of the domain expired without an outcome.

    In autocommit, the statements of a pipeline up to its one Sync run as one implicit
    transaction: the lease settings hold for the lease statement alone, and a failure
    rolls back both; the statement stays prepared.
    """
    query = (
        _dequeue_query(schema, limited) if statement == "dequeue" else _sql.query(statement, schema)
    )
    async with conn.pipeline():
        await tuple_cursor(conn).execute(_sql.query("lease_settings", schema))
        if limited:  # dequeues of the domain take turns from here to the commit
            await tuple_cursor(conn).execute(_sql.query("limits_lock", schema), params)
        cur = await tuple_cursor(conn).execute(query, params)
    rows = await cur.fetchall()
    if not rows:
        return [], False
    (
        msg_id,
        lease_id,
        command_id,
        command_type,
        data,
        correlation_id,
        reply_to,
        batch_id,
        created_at,
        attempts,
        max_attempts,
        forgiven,
        trace_context,
        cancel,
        expired,
        ready_for,
    ) = _columns(cur, _LEASE_COLUMNS)
    domain = params["domain"]
    now = time.monotonic()
    leases = [
        Lease(
            row[msg_id],
            row[lease_id],
            Command(
                domain,
                row[command_type],
                row[command_id],
                row[data],
                row[correlation_id],
                row[reply_to],
                row[batch_id],
                row[created_at],
                row[trace_context],
            ),
            row[attempts],
            row[max_attempts],
            row[forgiven],
            row[cancel],
            now - row[ready_for],
        )
        for row in rows
        if row[lease_id] is not None  # dequeue's one row when nothing was leased
    ]
    return leases, bool(rows[-1][expired])


@functools.cache
def _dequeue_query(schema: str, limited: bool) -> bytes:
    """dequeue.sql with its pick fragment, rendered once per schema and variant."""
    pick = _sql.query("dequeue_pick_limited" if limited else "dequeue_pick", schema)
    return _sql.query("dequeue", schema, picked=pick.decode())


async def declare_limits(
    conn: AsyncConnection[Any], schema: str, domain: str, declared: dict[str, int]
) -> bool:
    """Write a registry's concurrency limits for ``domain``; whether it has any (declared
    here or by other workers' registries)."""
    params = {
        "domain": domain,
        "command_types": list(declared),
        "max_running": list(declared.values()),
    }
    row = await fetch_one(conn, _sql.query("limits_declare", schema), params)
    return bool(row and row[0])


async def finish(conn: AsyncConnection[Any], schema: str, params: dict[str, Any]) -> set[Any]:
    """Record outcomes (``finish_params``); the ids of the commands whose lease still held.
    The caller commits (or runs it in autocommit)."""
    rows = await fetch_all(conn, _sql.query("finish", schema), params)
    return {row[0] for row in rows}


def finish_sync(conn: psycopg.Connection[Any], schema: str, params: dict[str, Any]) -> set[Any]:
    """:func:`finish` on a plain handler's synchronous connection, in its thread."""
    with psycopg.Cursor(conn, row_factory=tuple_row) as cur:
        cur.execute(_sql.query("finish", schema), params)
        return {row[0] for row in cur.fetchall()}


async def extend_lease(conn: AsyncConnection[Any], schema: str, params: dict[str, Any]) -> bool:
    """Move a held lease's end; False if the lease was lost (the caller commits)."""
    return await fetch_one(conn, _sql.query("extend_lease", schema), params) is not None


async def cancel_requests(
    conn: AsyncConnection[Any], schema: str, domain: str, worker: str, lease_ids: list[int]
) -> list[tuple[int, dict[str, Any]]]:
    """Operators' cancel requests for the given leases of ``worker``: (lease id, request)."""
    params = {"domain": domain, "worker": worker, "lease_ids": lease_ids}
    rows = await fetch_all(conn, _sql.query("cancel_requests", schema), params)
    return [(row[0], row[1]) for row in rows]


# -- the worker registry -----------------------------------------------------------------


async def register_worker(
    conn: AsyncConnection[Any], schema: str, params: dict[str, Any]
) -> datetime:
    """Write (or refresh) a consumer's registry row; when it started."""
    row = await fetch_one(conn, _sql.query("register_worker", schema), params)
    assert row is not None  # INSERT ... ON CONFLICT DO UPDATE returns its row
    return cast(datetime, row[0])


async def heartbeat(conn: AsyncConnection[Any], schema: str, member: str, in_flight: int) -> bool:
    """Refresh a registry row's heartbeat; False if there is no row to refresh."""
    params = {"id": member, "in_flight": in_flight}
    return await fetch_one(conn, _sql.query("heartbeat", schema), params) is not None


async def unregister_worker(conn: AsyncConnection[Any], schema: str, member: str) -> None:
    await execute(conn, _sql.query("unregister_worker", schema), {"id": member})


# -- cancel, batches ---------------------------------------------------------------------


async def lock_command(
    conn: AsyncConnection[Any], schema: str, domain: str, command_id: Any
) -> tuple[CommandStatus, str | None] | None:
    """Lock a command's row for an operator action (in the caller's transaction): its
    status and reply queue, or None if there is no such command."""
    params = {"domain": domain, "command_id": command_id}
    row = await fetch_one(conn, _sql.query("lock_command", schema), params)
    return None if row is None else (CommandStatus(row[0]), row[1])


async def cancel_command(conn: AsyncConnection[Any], schema: str, params: dict[str, Any]) -> None:
    """Cancel a locked command (or ask its worker to): see ``CommandBus.cancel``."""
    await execute(conn, _sql.query("cancel_command", schema), params)


async def claim_batches(
    conn: AsyncConnection[Any], schema: str, batch_ids: list[Any], completed_at: list[Any]
) -> bool:
    """Claim completed batches' callbacks for this process; whether any was claimed."""
    params = {"batch_ids": batch_ids, "completed_at": completed_at}
    return bool(await fetch_all(conn, _sql.query("batch_claim", schema), params))


# -- paused domains ------------------------------------------------------------------------


async def _dict_rows(
    conn: AsyncConnection[Any], name: str, schema: str, params: Any
) -> list[dict[str, Any]]:
    async with AsyncCursor(conn, row_factory=dict_row) as cur:
        await cur.execute(_sql.query(name, schema), params)
        return await cur.fetchall()


async def pause_domain(
    conn: AsyncConnection[Any], schema: str, domain: str, operator: str | None, reason: str | None
) -> dict[str, Any]:
    """Pause (or re-pause) a domain; its row (domain, operator, reason, paused_at)."""
    params = {"domain": domain, "operator": operator, "reason": reason}
    (row,) = await _dict_rows(conn, "domain_pause", schema, params)
    return row


async def resume_domain(conn: AsyncConnection[Any], schema: str, domain: str, channel: str) -> bool:
    """Resume a domain and wake its workers; False if it was not paused."""
    params = {"domain": domain, "channel": channel}
    return bool(await fetch_all(conn, _sql.query("domain_resume", schema), params))


async def list_paused(conn: AsyncConnection[Any], schema: str) -> list[dict[str, Any]]:
    """The paused domains' rows, by name."""
    return await _dict_rows(conn, "domain_list_paused", schema, {})
