"""Counts for operators (``commandbus stats``): commands by domain and status, and per
domain the queue's depth, what is ready, how long it has waited, and whether the domain
is paused.

Reads the whole ``commands`` table: meant for operators, not for a tight monitoring loop
(``commandbus health`` and the Prometheus gauges are cheaper).
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._db import autocommit_connection, fetch_all
from commandbus._validation import check_schema
from commandbus.domains import PausedDomain
from commandbus.models import CommandStatus

__all__ = ["QueueStats", "Stats", "read_stats"]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One domain's unfinished commands."""

    domain: str
    #: Pending, leased, or waiting for a retry.
    depth: int
    #: Deliverable now.
    ready: int
    #: Seconds since the oldest of them was sent.
    oldest_pending_age: float | None
    #: Seconds the longest-waiting ready command has waited (None: none is ready).
    ready_wait: float | None
    #: Workers start none of its commands until it is resumed: its ready commands wait
    #: for an operator, not for a worker.
    paused: bool


@dataclass(frozen=True, slots=True)
class Stats:
    #: Domain -> status -> number of commands (every status, 0 included).
    commands: dict[str, dict[str, int]]
    queue: list[QueueStats]
    #: Every paused domain, with or without commands.
    paused: list[PausedDomain]


async def read_stats(pool: AsyncConnectionPool, *, schema: str = "commandbus") -> Stats:
    """Commands by domain and status, each domain's queue, and the paused domains."""
    schema = check_schema(schema)
    async with autocommit_connection(pool) as conn:
        counted = await fetch_all(conn, _sql.query("stats_commands", schema), {})
        queued = await fetch_all(conn, _sql.query("stats_queue", schema), {})
        paused = await fetch_all(conn, _sql.query("domain_list_paused", schema), {})
    commands: dict[str, dict[str, int]] = {}
    for domain, status, n in counted:
        commands.setdefault(domain, {s.value: 0 for s in CommandStatus})[status] = n
    return Stats(
        commands=commands,
        queue=[QueueStats(*row) for row in queued],
        paused=[PausedDomain(*row) for row in paused],
    )
