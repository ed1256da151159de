"""Typed reads: each statement that returns models is paired here with its row type.

Rows are mapped by column *name* (psycopg's ``kwargs_row``), so a statement may order
or add columns freely: no module indexes a row tuple for these models, and the pairing
of ``sql/queries/<name>.sql`` with what it returns lives only in :data:`ROW_TYPES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import kwargs_row

from commandbus import _sql
from commandbus._tsq_types import ActedRow, ErrorGroup, PickedRow
from commandbus.models import (
    AuditEvent,
    CommandMetadata,
    CommandStatus,
    TroubleshootingItem,
    WorkerInfo,
)

__all__ = [
    "ROW_TYPES",
    "act_on_parked",
    "fetch_audit_events",
    "fetch_command_detail",
    "fetch_commands",
    "fetch_error_groups",
    "fetch_parked_items",
    "fetch_troubleshooting_items",
    "fetch_workers",
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
