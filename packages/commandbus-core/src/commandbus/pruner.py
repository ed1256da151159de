"""Retention: delete what finished long ago, so tables stay the size of recent work.

A :class:`Pruner` deletes, in statements of at most ``chunk_size`` rows each (short
transactions, short locks):

* commands that finished (COMPLETED, FAILED, CANCELED) more than ``older_than`` ago, with
  their audit rows and unread replies;
* finished batches (nothing pending, in progress or in the troubleshooting queue) created
  and last changed before then, with their commands;
* processes that ended before then, with their process audit; their commands follow.

Never deleted: commands in the troubleshooting queue (nor pending or running ones),
anything of a batch or a process that has not finished, and parked replies.

Every :class:`~commandbus.Worker` runs one (``retention=``, on by default, 7 days); any
number may run, one at a time does the work: each round is led by whoever takes the
schema's advisory lock (``pg_try_advisory_lock``), the others skip it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._db import autocommit_connection, fetch_all, fetch_one
from commandbus._errors import ValidationError
from commandbus._periodic import RoundService
from commandbus._validation import (
    MAX_CHUNK_SIZE,
    MAX_INTERVAL_S,
    check_age,
    check_positive_int,
    check_positive_seconds,
    check_schema,
)

__all__ = ["DEFAULT_RETENTION", "PruneResult", "Pruner", "Retention"]

log = logging.getLogger("commandbus.pruner")


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished work is kept, and how the pruner goes about deleting it.

    ``older_than``: finished commands, batches and processes older than this are deleted
    (default 7 days). ``interval``: seconds between rounds (default 60, spread by up to
    10 % so that workers started together do not try at once). ``chunk_size``: most
    rows (commands, batches or processes) deleted by one statement (default 1000).
    """

    older_than: timedelta = timedelta(days=7)
    interval: float = 60.0
    chunk_size: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "older_than", check_age("older_than", self.older_than))
        interval = check_positive_seconds("interval", self.interval, at_most=MAX_INTERVAL_S)
        object.__setattr__(self, "interval", interval)
        check_positive_int("chunk_size", self.chunk_size, at_most=MAX_CHUNK_SIZE)


#: What a Worker runs unless told otherwise: 7 days, a round a minute.
DEFAULT_RETENTION = Retention()


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What one prune deleted (or, with ``dry_run``, would delete)."""

    commands: int
    batches: int
    processes: int
    #: The finish time before which work was deleted.
    cutoff: datetime


class Pruner(RoundService):
    """Deletes finished work older than ``retention.older_than``; see the module doc.

    ``await pruner.prune()`` runs one round now (``PruneResult``, or None if another
    pruner holds the lock); ``await pruner.run()`` prunes every ``retention.interval``
    seconds until ``await pruner.stop()``.
    """

    kind: ClassVar[str] = "pruner"
    log: ClassVar[logging.Logger] = log

    def __init__(
        self,
        pool: AsyncConnectionPool,
        retention: Retention = DEFAULT_RETENTION,
        *,
        schema: str = "commandbus",
    ) -> None:
        if not isinstance(retention, Retention):
            raise ValidationError(
                "retention", f"must be a commandbus.Retention, got {type(retention).__name__}"
            )
        self.pool = pool
        self.retention = retention
        self.schema = check_schema(schema)
        #: Totals deleted by this pruner's rounds, the rounds it led, and the milliseconds
        #: those rounds took.
        self.stats: dict[str, int] = dict.fromkeys(
            ("commands", "batches", "processes", "rounds", "busy_ms"), 0
        )
        self._init_rounds()

    def _first_wait(self) -> float:
        # Workers started together (a deployment) do not all try at once.
        return random.uniform(0, min(self.retention.interval, 10.0))

    async def _round(self) -> float:
        result = await self.prune()
        if result is not None and (result.commands or result.batches or result.processes):
            log.info(
                "pruned %d commands, %d batches, %d processes finished before %s",
                result.commands,
                result.batches,
                result.processes,
                result.cutoff.isoformat(timespec="seconds"),
            )
        return self.retention.interval * random.uniform(0.9, 1.1)

    async def prune(self, *, dry_run: bool = False) -> PruneResult | None:
        """One round: delete everything due, chunk by chunk. Returns what was deleted, or
        None when another pruner holds the lock. ``dry_run``: count only (no lock)."""
        age = self.retention.older_than.total_seconds()
        if dry_run:
            async with autocommit_connection(self.pool) as conn:
                row = await fetch_one(
                    conn,
                    b"SELECT now() - make_interval(secs => %(age)s)",
                    {"age": age},
                )
                assert row is not None
                cutoff = row[0]
                counts = await fetch_one(
                    conn, _sql.query("prune_count", self.schema), {"cutoff": cutoff}
                )
            assert counts is not None
            return PruneResult(int(counts[0]), int(counts[1]), int(counts[2]), cutoff)
        async with autocommit_connection(self.pool) as conn:
            row = await fetch_one(
                conn,
                b"SELECT pg_try_advisory_lock(hashtext(%(key)s)), "
                b"now() - make_interval(secs => %(age)s)",
                {"key": self._lock_key(), "age": age},
            )
            assert row is not None
            locked, cutoff = row
            if not locked:
                return None
            started = time.perf_counter()
            try:
                result = await self._delete(conn, cutoff)
                self.stats["busy_ms"] += round((time.perf_counter() - started) * 1000)
            finally:
                # A connection broken (or cancelled mid-statement) is closed, not reused:
                # the session's lock goes with it.
                with contextlib.suppress(Exception):
                    await fetch_all(
                        conn,
                        b"SELECT pg_advisory_unlock(hashtext(%(key)s))",
                        {"key": self._lock_key()},
                    )
        self.stats["rounds"] += 1
        self.stats["commands"] += result.commands
        self.stats["batches"] += result.batches
        self.stats["processes"] += result.processes
        return result

    def _lock_key(self) -> str:
        return f"commandbus.prune:{self.schema}"

    async def _delete(self, conn: AsyncConnection[Any], cutoff: datetime) -> PruneResult:
        params = {"cutoff": cutoff, "limit": self.retention.chunk_size}
        # Processes first: their commands become ordinary finished commands.
        processes = await self._repeat(conn, "prune_processes", params)
        commands = batches = 0
        while True:
            row = await fetch_one(conn, self._query("prune_batches"), params)
            assert row is not None
            commands += int(row[0])
            batches += int(row[1])
            if not row[0] and not row[1]:
                break
        commands += await self._repeat(conn, "prune_commands", params)
        return PruneResult(commands, batches, processes, cutoff)

    def _query(self, name: str) -> bytes:
        """A prune statement, with the shared delete of its commands (prune_delete.sql)."""
        deleted = _sql.query("prune_delete", self.schema).decode()
        return _sql.query(name, self.schema, deleted=deleted)

    async def _repeat(self, conn: AsyncConnection[Any], name: str, params: dict[str, Any]) -> int:
        """Run a delete statement until it deletes less than a full chunk."""
        total = 0
        while True:
            row = await fetch_one(conn, self._query(name), params)
            assert row is not None
            total += int(row[0])
            if int(row[0]) < self.retention.chunk_size:
                return total
