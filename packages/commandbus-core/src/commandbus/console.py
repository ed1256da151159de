"""Reads for operator consoles (``commandbus-web``) that the rest of the API lacks.

Every read is bounded, whatever the size of the tables: counts stop at a cap (a console
shows "10,000+"), lists are pages after a keyset cursor (never an OFFSET into a million
rows), and the per-minute series reads only recently sent commands.

Cursors are opaque strings: pass ``page.next_cursor`` back as ``after`` for the next page.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.errors import QueryCanceled
from psycopg.rows import kwargs_row
from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._db import autocommit_connection, tuple_cursor
from commandbus._errors import ValidationError
from commandbus._store import ROW_TYPES, fetch_parked_items, parked_match
from commandbus._tsq_filter import cursor_params, filter_params
from commandbus._tsq_types import (
    ErrorGroup,
    TroubleshootingCursor,
    TroubleshootingFilter,
    TroubleshootingPage,
    page_of,
)
from commandbus._validation import (
    check_datetime,
    check_name,
    check_positive_int,
    check_schema,
    check_status,
    check_uuid,
    require_uuid,
)
from commandbus.batches import _batch_info
from commandbus.domains import PausedDomain
from commandbus.models import BatchInfo, CommandMetadata
from commandbus.process.models import ProcessInfo, ProcessStatus
from commandbus.process.repository import _process

__all__ = [
    "COUNT_CAP",
    "BatchPage",
    "CommandDetail",
    "CommandPage",
    "DomainStats",
    "ErrorGroups",
    "Overview",
    "ProcessPage",
    "SearchTooBroadError",
    "ThroughputPoint",
    "command_detail",
    "count_parked",
    "error_groups",
    "find_commands",
    "list_batches",
    "list_domains",
    "list_processes",
    "overview",
    "parked_page",
]

#: Counts stop here: a count above it means "more than COUNT_CAP".
COUNT_CAP = 10_000
#: Minutes of the finished-per-minute series.
THROUGHPUT_MINUTES = 15
#: Only commands sent this long ago at most are read for the series (and domain list).
SENT_WINDOW_SECONDS = 3600.0
_MAX_PAGE = 500


_BUDGET = b"SELECT set_config('statement_timeout', %s, true), set_config('jit', 'off', true)"
_TSQ_HINT = "a domain, or a parked since/until range"


class SearchTooBroadError(ValidationError):
    """A command search ran past its time budget: narrow it (time range, id, domain)."""

    def __init__(
        self,
        timeout_ms: int,
        hint: str = "a time range (sent after/before), a command or correlation id",
    ) -> None:
        super().__init__(
            "search", f"no page found within {timeout_ms} ms: narrow the search with {hint}"
        )


@dataclass(frozen=True, slots=True)
class DomainStats:
    """One domain now. Counts above ``COUNT_CAP`` are returned as ``COUNT_CAP + 1``."""

    domain: str
    pending: int
    in_flight: int
    troubleshooting: int
    #: Seconds the oldest ready (deliverable now) command has waited; None if none waits.
    oldest_ready_age: float | None


@dataclass(frozen=True, slots=True)
class ThroughputPoint:
    domain: str
    minute: datetime
    completed: int
    #: FAILED, or parked in the troubleshooting queue, during that minute.
    failed: int


@dataclass(frozen=True, slots=True)
class Overview:
    domains: list[DomainStats]
    #: Per domain and minute, oldest first; minutes without a finished command are absent.
    throughput: list[ThroughputPoint]
    #: The database's clock when read (the series' minutes are relative to it).
    now: datetime
    minutes: int
    cap: int
    #: The paused domains (who paused them, why, since when), by name.
    paused: dict[str, PausedDomain] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandPage:
    items: list[CommandMetadata]
    #: Pass as ``after`` for the next page; None on the last page.
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class BatchPage:
    items: list[BatchInfo]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ProcessPage:
    items: list[ProcessInfo]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ErrorGroups:
    """The troubleshooting queue's error groups, read from the newest parked commands."""

    groups: list[ErrorGroup]
    #: Commands the groups count (their sum).
    counted: int
    #: True: every matching command is counted. False: the scan stopped at its bound,
    #: so each count (and the total) is a lower bound ("at least").
    complete: bool


@dataclass(frozen=True, slots=True)
class CommandDetail:
    """A command with what :class:`CommandMetadata` does not carry."""

    command: CommandMetadata
    traceback: str | None
    priority: int
    #: PENDING: deliverable from then on; IN_PROGRESS: when the lease expires.
    visible_at: datetime | None
    #: The worker holding (or that last held) the lease.
    worker: str | None


async def list_domains(pool: AsyncConnectionPool, *, schema: str = "commandbus") -> list[str]:
    """Domains with commands pending, running or parked, sent in the last hour, or with
    a registered worker."""
    async with autocommit_connection(pool) as conn:
        return await _domains(conn, check_schema(schema))


async def overview(
    pool: AsyncConnectionPool,
    *,
    schema: str = "commandbus",
    cap: int = COUNT_CAP,
    minutes: int = THROUGHPUT_MINUTES,
) -> Overview:
    """Per domain depth, in flight, troubleshooting and oldest ready age, and the commands
    finished per minute over the last ``minutes`` minutes."""
    schema = check_schema(schema)
    cap = _positive("cap", cap)
    minutes = _positive("minutes", minutes)
    async with autocommit_connection(pool) as conn:
        paused = [PausedDomain(*row) for row in await _rows(conn, "domain_list_paused", schema, {})]
        # A paused domain is listed even when nothing waits in it: it can be resumed.
        domains = sorted({*await _domains(conn, schema), *(p.domain for p in paused)})
        stats = await _rows(conn, "console_domain_stats", schema, {"domains": domains, "cap": cap})
        series = await _rows(
            conn,
            "console_throughput",
            schema,
            {"minutes": minutes, "sent_window": SENT_WINDOW_SECONDS + minutes * 60},
        )
        now_rows = await _rows_sql(conn, b"SELECT now()", None)
    return Overview(
        domains=[DomainStats(*row) for row in stats],
        throughput=[ThroughputPoint(*row) for row in series],
        now=now_rows[0][0],
        minutes=minutes,
        cap=cap,
        paused={p.domain: p for p in paused},
    )


async def find_commands(
    pool: AsyncConnectionPool,
    *,
    schema: str = "commandbus",
    command_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
    domain: str | None = None,
    command_type: str | None = None,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = 50,
    after: str | None = None,
    timeout_ms: int = 5000,
) -> CommandPage:
    """Commands matching every given filter, newest first, a page after ``after``.

    A search that runs longer than ``timeout_ms`` raises :class:`SearchTooBroadError`
    (a filter no index serves, over a long history: give a time range or an id).
    """
    limit = _page_size(limit)
    params = {
        "command_id": check_uuid("command_id", command_id, optional=True),
        "correlation_id": check_uuid("correlation_id", correlation_id, optional=True),
        "domain": None if domain is None else check_name("domain", domain),
        "command_type": None if command_type is None else check_name("command_type", command_type),
        "status": None if status is None else check_status(status),
        "created_after": check_datetime("created_after", created_after),
        "created_before": check_datetime("created_before", created_before),
        "limit": limit + 1,
        **_cursor(after),
    }
    schema = check_schema(schema)
    # A filter no index serves (a rare type in no given time range) reads the created_at
    # index to its end: bounded here, and the caller is told to narrow the search.
    async with _bounded(pool, timeout_ms) as conn:
        rows = await _commands(conn, "console_find_commands", schema, params)
    items, more = rows[:limit], len(rows) > limit
    last = items[-1] if more else None
    return CommandPage(items, None if last is None else _encode(last.created_at, last.command_id))


async def command_detail(
    pool: AsyncConnectionPool, domain: str, command_id: uuid.UUID, *, schema: str = "commandbus"
) -> CommandDetail | None:
    """The command with its traceback and delivery fields; None if unknown."""
    params = {
        "domain": check_name("domain", domain),
        "command_id": require_uuid("command_id", command_id),
    }
    schema = check_schema(schema)
    async with autocommit_connection(pool) as conn:
        found = await _commands(conn, "get_command", schema, params)
        extra = await _rows(conn, "console_command_traceback", schema, params)
    if not found or not extra:
        return None
    traceback, priority, visible_at, worker = extra[0]
    return CommandDetail(found[0], traceback, priority, visible_at, worker)


async def list_batches(
    pool: AsyncConnectionPool,
    *,
    schema: str = "commandbus",
    domain: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> BatchPage:
    """Batches of every domain (or one), newest first, with their counters."""
    limit = _page_size(limit)
    params = {
        "domain": None if domain is None else check_name("domain", domain),
        "limit": limit + 1,
        **_cursor(after),
    }
    async with autocommit_connection(pool) as conn:
        rows = await _rows(conn, "console_batches", check_schema(schema), params)
    items = [_batch_info(row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return BatchPage(items, None if last is None else _encode(last.created_at, last.batch_id))


async def list_processes(
    pool: AsyncConnectionPool,
    *,
    schema: str = "commandbus",
    domain: str | None = None,
    process_type: str | None = None,
    status: ProcessStatus | str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> ProcessPage:
    """Processes of every domain (or one), newest first; ``status`` is the derived one."""
    limit = _page_size(limit)
    if status is not None:
        try:
            status = ProcessStatus(str(status)).value
        except ValueError:
            raise ValidationError("status", f"{status!r} is not a process status") from None
    params = {
        "domain": None if domain is None else check_name("domain", domain),
        "process_type": None if process_type is None else check_name("process_type", process_type),
        "status": status,
        "limit": limit + 1,
        **_cursor(after),
    }
    async with autocommit_connection(pool) as conn:
        rows = await _rows(conn, "console_processes", check_schema(schema), params)
    items = [_process(row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return ProcessPage(items, None if last is None else _encode(last.created_at, last.process_id))


async def error_groups(
    pool: AsyncConnectionPool,
    where: TroubleshootingFilter | None = None,
    *,
    schema: str = "commandbus",
    scan: int = COUNT_CAP,
    timeout_ms: int = 2000,
) -> ErrorGroups:
    """:meth:`TroubleshootingQueue.summary` with bounded work: the groups of the newest
    ``scan`` parked commands matching ``where``. With a million parked, it reads ``scan``
    of them, not the million; ``complete`` says whether that was all.

    A filter that finds too few matches among many parked commands within ``timeout_ms``
    (a rare error code, no domain or time range) raises :class:`SearchTooBroadError`.
    """
    scan = _positive("scan", scan)
    params = {**filter_params(where, required=False), "scan": scan}
    schema = check_schema(schema)
    query = _sql.query("console_error_groups", schema, match=parked_match(schema))
    async with (
        _bounded(pool, timeout_ms, _TSQ_HINT) as conn,
        AsyncCursor(conn, row_factory=kwargs_row(ErrorGroup)) as cur,
    ):
        await cur.execute(query, params, prepare=False)
        groups = await cur.fetchall()
    counted = sum(g.count for g in groups)
    return ErrorGroups(groups, counted, counted < scan)


async def count_parked(
    pool: AsyncConnectionPool,
    where: TroubleshootingFilter | None = None,
    *,
    schema: str = "commandbus",
    cap: int = COUNT_CAP,
    timeout_ms: int = 2000,
) -> int:
    """Parked commands matching ``where``, counted up to ``cap + 1`` (more than ``cap``
    when it returns ``cap + 1``): what a bulk action with that filter would touch."""
    cap = _positive("cap", cap)
    params = {**filter_params(where, required=False), "cap": cap}
    schema = check_schema(schema)
    query = _sql.query("console_count_parked", schema, match=parked_match(schema))
    async with _bounded(pool, timeout_ms, _TSQ_HINT) as conn:
        rows = await _rows_sql(conn, query, params)
    return int(rows[0][0])


async def parked_page(
    pool: AsyncConnectionPool,
    where: TroubleshootingFilter | None = None,
    *,
    schema: str = "commandbus",
    limit: int = 50,
    after: TroubleshootingCursor | None = None,
    timeout_ms: int = 2000,
) -> TroubleshootingPage:
    """:meth:`TroubleshootingQueue.find` within ``timeout_ms`` (else
    :class:`SearchTooBroadError`): a filter that matches few of many parked commands
    would otherwise read them all to fill a page."""
    limit = _page_size(limit)
    params = {**filter_params(where, required=False), **cursor_params(after), "limit": limit + 1}
    schema = check_schema(schema)
    async with _bounded(pool, timeout_ms, _TSQ_HINT) as conn:
        items = await fetch_parked_items(conn, schema, params)
    return page_of(items, limit)


# -- helpers -------------------------------------------------------------------------


@asynccontextmanager
async def _bounded(
    pool: AsyncConnectionPool, timeout_ms: object, hint: str | None = None
) -> AsyncIterator[AsyncConnection[Any]]:
    """A connection in a transaction whose statements stop after ``timeout_ms``
    (:class:`SearchTooBroadError`, with ``hint`` saying how to narrow the search)."""
    budget = _positive("timeout_ms", timeout_ms)
    async with pool.connection() as conn, conn.transaction():
        # JIT compiles for rows the planner expects, not for the LIMIT that stops the
        # scan early: tens of milliseconds spent before the first row, for nothing.
        await conn.execute(_BUDGET, [f"{budget}ms"])
        try:
            yield conn
        except QueryCanceled:
            if hint is None:
                raise SearchTooBroadError(budget) from None
            raise SearchTooBroadError(budget, hint) from None


async def _domains(conn: AsyncConnection[Any], schema: str) -> list[str]:
    rows = await _rows(conn, "console_domains", schema, {"window": SENT_WINDOW_SECONDS})
    return [row[0] for row in rows]


async def _commands(
    conn: AsyncConnection[Any], name: str, schema: str, params: Any
) -> list[CommandMetadata]:
    async with AsyncCursor(conn, row_factory=kwargs_row(ROW_TYPES[name])) as cur:
        await cur.execute(_sql.query(name, schema), params, prepare=False)
        return await cur.fetchall()


async def _rows(
    conn: AsyncConnection[Any], name: str, schema: str, params: Any
) -> list[tuple[Any, ...]]:
    return await _rows_sql(conn, _sql.query(name, schema), params)


async def _rows_sql(conn: AsyncConnection[Any], query: bytes, params: Any) -> list[tuple[Any, ...]]:
    async with tuple_cursor(conn) as cur:
        # Not prepared: these statements' filters are mostly NULL, and a generic plan of
        # "x IS NULL OR col = x" would not use the index a given filter needs.
        await cur.execute(query, params, prepare=False)
        return await cur.fetchall()


def _positive(field: str, value: object) -> int:
    """1 to 2**31 - 1: what statement_timeout (ms) takes, and far beyond any cap or series."""
    return check_positive_int(field, value)


def _page_size(limit: object) -> int:
    value = _positive("limit", limit)
    if value > _MAX_PAGE:
        raise ValidationError("limit", f"must be at most {_MAX_PAGE}, got {value}")
    return value


def _encode(at: datetime, key: uuid.UUID) -> str:
    return f"{at.isoformat()}~{key}"


def _cursor(after: str | None) -> dict[str, Any]:
    if after is None or after == "":
        return {"cursor_at": None, "cursor_id": None}
    if not isinstance(after, str):
        raise ValidationError("after", "must be a cursor string from a previous page")
    at, sep, key = after.partition("~")
    try:
        if not sep:
            raise ValueError(after)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError(after)
        return {"cursor_at": when, "cursor_id": uuid.UUID(key)}
    except ValueError:
        raise ValidationError("after", f"{after!r} is not a page cursor") from None
