"""Health checks for probes, alerts and ``commandbus health``.

:func:`check_health` runs, on one connection and in this order:

``database``
    the server answers (a connection within ``timeout`` seconds and a query).
``migrations``
    the schema has every migration this library ships.
``workers`` (only with ``domain``)
    at least one worker of the domain has a fresh heartbeat in the worker registry.
``paused``
    the paused domains (of the scope), by whom and why; never a failure: pausing is an
    operator's decision, and ``commandbus resume`` ends it.
``pending``
    how long the command that became deliverable first has waited for a worker: a
    ``PENDING`` command whose ``vt`` has passed, aged ``now() - vt``. Measured from
    ``vt`` rather than ``created_at`` so that delayed commands and retries waiting out
    their backoff are not counted as late; fails above ``max_pending_age`` seconds.
    Commands of a paused domain wait for a resume, not for a worker: they are counted
    apart and never fail the check.
``troubleshooting``
    commands waiting for an operator; fails above ``max_troubleshooting``.

Without a threshold, ``pending`` and ``troubleshooting`` only report. When the database
is unreachable or the schema is not migrated, the checks after that one are not run (the
report ends with the failing check).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus import _registry, _sql
from commandbus._db import autocommit_connection, fetch_all, fetch_one
from commandbus._store import fetch_workers
from commandbus._validation import (
    MAX_BIGINT,
    MAX_INTERVAL_S,
    MAX_SECONDS,
    check_int,
    check_name,
    check_positive_seconds,
    check_schema,
    check_seconds,
)
from commandbus.migrations import applied_migrations, shipped_migrations
from commandbus.models import HealthCheck, HealthReport

__all__ = ["check_health"]


async def check_health(
    pool: AsyncConnectionPool,
    *,
    schema: str = "commandbus",
    domain: str | None = None,
    max_pending_age: float | None = None,
    max_troubleshooting: int | None = None,
    timeout: float = 5.0,
) -> HealthReport:
    """Check the database, the schema, the domain's workers, the backlog and the
    troubleshooting queue; never raises for an unreachable database (the ``database``
    check fails instead). ``timeout`` bounds the whole run, in seconds.

    ``domain`` limits ``pending`` and ``troubleshooting`` to one domain and adds the
    ``workers`` check. See the module docstring for what each check means.
    """
    run = _Run(
        schema=check_schema(schema),
        domain=None if domain is None else check_name("domain", domain),
        max_pending_age=None
        if max_pending_age is None
        else check_seconds("max_pending_age", max_pending_age, at_most=MAX_SECONDS, zero=True),
        max_troubleshooting=None
        if max_troubleshooting is None
        else check_int("max_troubleshooting", max_troubleshooting, at_least=0, at_most=MAX_BIGINT),
    )
    timeout = check_positive_seconds("timeout", timeout, at_most=MAX_INTERVAL_S)
    try:
        async with asyncio.timeout(timeout), autocommit_connection(pool) as conn:
            await run.all(conn)
    except TimeoutError:
        run.fail(f"no answer within {timeout:g} s")
    except psycopg.Error as exc:  # PoolTimeout is one too
        run.fail(_one_line(exc))
    return HealthReport(run.checks)


class _Run:
    def __init__(
        self,
        *,
        schema: str,
        domain: str | None,
        max_pending_age: float | None,
        max_troubleshooting: int | None,
    ) -> None:
        self.schema = schema
        self.domain = domain
        self.max_pending_age = max_pending_age
        self.max_troubleshooting = max_troubleshooting
        self.checks: list[HealthCheck] = []
        self.current = "database"  # the check a failure is reported against

    def add(self, ok: bool, detail: str) -> None:
        self.checks.append(HealthCheck(self.current, ok, detail))

    def fail(self, reason: str) -> None:
        """The current check could not finish (unreachable, timed out, query failed)."""
        prefix = "unreachable: " if self.current == "database" else "could not check: "
        self.add(False, prefix + reason)

    @property
    def scope(self) -> str:
        return "all domains" if self.domain is None else f"domain {self.domain!r}"

    async def all(self, conn: AsyncConnection[Any]) -> None:
        row = await self._one(conn, "health_server", None)
        self.add(True, f"reachable (PostgreSQL {row[0]})")
        self.current = "migrations"
        if not await self._migrations(conn):
            return
        if self.domain is not None:
            self.current = "workers"
            await self._workers(conn)
        self.current = "paused"
        await self._paused(conn)
        self.current = "pending"
        await self._pending(conn)
        self.current = "troubleshooting"
        await self._troubleshooting(conn)

    async def _migrations(self, conn: AsyncConnection[Any]) -> bool:
        shipped = shipped_migrations()
        fix = f"run: commandbus migrate --schema {self.schema}"
        applied = await applied_migrations(conn, self.schema)
        if applied is None:
            self.add(False, f"schema {self.schema!r} is not migrated ({fix})")
            return False
        missing = [version for version in shipped if version not in applied]
        if missing:
            self.add(False, f"schema {self.schema!r} lacks migrations {missing} ({fix})")
            return False
        detail = f"schema {self.schema!r} has all {len(shipped)} migrations"
        newer = sorted(version for version in applied if version > shipped[-1])
        if newer:
            detail += f" (and {newer}, from a newer commandbus)"
        self.add(True, detail)
        return True

    async def _workers(self, conn: AsyncConnection[Any]) -> None:
        params = {
            "domain": self.domain,
            "kind": "worker",
            "stale_after": float(_registry.STALE_AFTER_INTERVALS),
        }
        workers = await fetch_workers(conn, self.schema, params)
        live = [w for w in workers if not w.stale]
        stale = len(workers) - len(live)
        if live:
            newest = min(w.heartbeat_age for w in live)
            detail = f"{_count(len(live), 'live worker')} for {self.scope}"
            detail += f", last heartbeat {newest:.1f} s ago"
            self.add(True, detail + (f" ({stale} stale)" if stale else ""))
        elif workers:
            newest = min(w.heartbeat_age for w in workers)
            self.add(
                False,
                f"no live worker for {self.scope}: {_count(stale, 'stale row')}, "
                f"last heartbeat {newest:.0f} s ago",
            )
        else:
            self.add(False, f"no worker registered for {self.scope}")

    async def _paused(self, conn: AsyncConnection[Any]) -> None:
        rows = await fetch_all(conn, _sql.query("domain_list_paused", self.schema), None)
        paused = [row for row in rows if self.domain is None or row[0] == self.domain]
        if not paused:
            self.add(True, f"no paused domain in {self.scope}")
            return
        said = "; ".join(
            f"{domain!r} by {operator or 'an unnamed operator'} ({reason or 'no reason given'})"
            for domain, operator, reason, _ in paused
        )
        self.add(True, f"paused: {said}; resume with: commandbus resume DOMAIN")

    async def _pending(self, conn: AsyncConnection[Any]) -> None:
        row = await self._one(conn, "health_pending", {"domain": self.domain})
        ready, oldest, waiting_for_resume = int(row[0]), row[1], int(row[2])
        limit = self.max_pending_age
        if not ready:
            detail, ok = f"no command waiting for a worker in {self.scope}", True
        else:
            detail = f"{_count(ready, 'command')} ready in {self.scope}, the oldest waiting "
            detail += f"{oldest:.1f} s"
            ok = limit is None or oldest <= limit
        detail += " (no limit set)" if limit is None else f" (limit {limit:g} s)"
        if waiting_for_resume:
            n = waiting_for_resume
            detail += f"; {n} ready in paused domains wait for a resume, not for a worker"
        self.add(ok, detail)

    async def _troubleshooting(self, conn: AsyncConnection[Any]) -> None:
        row = await self._one(conn, "count_troubleshooting", {"domain": self.domain})
        count, limit = int(row[0]), self.max_troubleshooting
        detail = f"{_count(count, 'command')} in the troubleshooting queue of {self.scope}"
        ok = limit is None or count <= limit
        self.add(ok, detail + (" (no limit set)" if limit is None else f" (limit {limit})"))

    async def _one(self, conn: AsyncConnection[Any], name: str, params: Any) -> tuple[Any, ...]:
        row = await fetch_one(conn, _sql.query(name, self.schema), params)
        assert row is not None  # aggregates always return a row
        return row


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _one_line(exc: psycopg.Error) -> str:
    message = exc.diag.message_primary or str(exc) or type(exc).__name__
    return " ".join(message.split())
