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
from commandbus.models import (
    AuditEvent,
    CommandMetadata,
    CommandStatus,
    TroubleshootingItem,
    WorkerInfo,
)

__all__ = [
    "ROW_TYPES",
    "fetch_audit_events",
    "fetch_commands",
    "fetch_troubleshooting_items",
    "fetch_workers",
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
}


async def _fetch(
    conn: AsyncConnection[Any], name: str, schema: str, params: Any, model: Callable[..., T]
) -> list[T]:
    if ROW_TYPES[name] is not model:
        raise TypeError(f"{name}.sql returns {ROW_TYPES[name]}, not {model}")
    async with AsyncCursor(conn, row_factory=kwargs_row(model)) as cur:
        await cur.execute(_sql.query(name, schema), params)
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
