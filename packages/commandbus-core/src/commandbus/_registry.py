"""The worker registry: which workers and routers run, where, and whether they are alive.

Each running :class:`~commandbus.Worker` and :class:`~commandbus.ProcessReplyRouter` keeps
one row in ``<schema>.workers`` through :func:`registered`, the one context manager both
``run()`` methods enter:

* a background task inserts the row (``register_worker.sql``), then refreshes its
  ``heartbeat_at`` and ``in_flight`` every :data:`HEARTBEAT_INTERVAL_S` seconds
  (``heartbeat.sql``); a heartbeat that finds no row registers again;
* leaving the block (a clean stop, or a cancelled ``run()``) deletes the row
  (``unregister_worker.sql``). A process killed hard leaves its row behind: it reads as
  ``stale`` once its heartbeat is older than :data:`STALE_AFTER_INTERVALS` intervals,
  and a later registration removes it after :data:`FORGET_AFTER_S`.

The registry never holds up or fails its owner: start-up does not wait for the first
registration, a heartbeat that fails (database down, pool exhausted) is logged once per
outage at WARNING and retried at the next interval, and a clean stop gives the delete at
most :data:`_UNREGISTER_GRACE_S` seconds.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from commandbus import _store
from commandbus._db import autocommit_connection
from commandbus._errors import ValidationError
from commandbus._store import fetch_workers
from commandbus._validation import check_name, check_positive_seconds, check_schema
from commandbus.models import WorkerInfo

__all__ = [
    "FORGET_AFTER_S",
    "HEARTBEAT_INTERVAL_S",
    "KINDS",
    "STALE_AFTER_INTERVALS",
    "list_workers",
    "member_id",
    "package_version",
    "registered",
]

log = logging.getLogger("commandbus.registry")

#: Seconds between heartbeats. Read when a worker or router starts (tests shorten it).
HEARTBEAT_INTERVAL_S = 10.0
#: A row is stale once its heartbeat is older than this many of its own intervals.
STALE_AFTER_INTERVALS = 3
#: Rows without a heartbeat for this long are deleted by the next registration.
FORGET_AFTER_S = 86_400.0
#: Registering and heartbeats may take this long at least, pool wait included (else the
#: interval): a slower answer counts as a failed heartbeat.
_MIN_BEAT_TIMEOUT_S = 2.0
#: At a clean stop, the longest the delete of the row may take: a database that is down
#: must not hold up the stop (the row then reads as stale).
_UNREGISTER_GRACE_S = 2.0

#: What registers: workers (by domain) and process reply routers (by reply queue).
KINDS = ("worker", "router")


def member_id(owner: object) -> str:
    """``host:pid:hex``, as :attr:`Worker.name <commandbus.Worker.name>` is built."""
    return f"{socket.gethostname()}:{os.getpid()}:{id(owner):x}"


@functools.cache
def package_version() -> str:
    """The installed ``commandbus-core`` version (the package's own from a source tree)."""
    try:
        return importlib.metadata.version("commandbus-core")
    except importlib.metadata.PackageNotFoundError:
        from commandbus import __version__

        return __version__


@asynccontextmanager
async def registered(
    pool: AsyncConnectionPool,
    *,
    schema: str,
    member: str,
    kind: str,
    domain: str,
    concurrency: int,
    in_flight: Callable[[], int],
    interval: float | None = None,
) -> AsyncIterator[None]:
    """Keep ``member``'s row in the registry for the duration of the block.

    ``in_flight`` is called at each heartbeat for the count to record; ``interval``
    defaults to :data:`HEARTBEAT_INTERVAL_S`. Nothing here raises because the database
    is unreachable; see the module docstring.
    """
    registration = _Registration(
        pool,
        schema=check_schema(schema),
        member=member,
        kind=_check_kind(kind),
        domain=domain,
        concurrency=concurrency,
        in_flight=in_flight,
        interval=check_positive_seconds(
            "interval", HEARTBEAT_INTERVAL_S if interval is None else interval
        ),
    )
    beating = asyncio.create_task(registration.keep_alive(), name=f"commandbus-heartbeat-{member}")
    try:
        yield
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
        await registration.leave()


class _Registration:
    """One member's row: register, beat until cancelled, delete."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        schema: str,
        member: str,
        kind: str,
        domain: str,
        concurrency: int,
        in_flight: Callable[[], int],
        interval: float,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.member = member
        self.kind = kind
        self.interval = interval
        self._in_flight = in_flight
        self._timeout = max(interval, _MIN_BEAT_TIMEOUT_S)
        self._row: dict[str, Any] = {
            "id": member,
            "kind": kind,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "domain": domain,
            "concurrency": concurrency,
            "version": package_version(),
            "heartbeat_interval": float(interval),
            "forget_after": FORGET_AFTER_S,
        }
        #: The first registration's start time, kept if the row has to be written again.
        self._started_at: datetime | None = None
        #: A statement that writes the row got a connection: there may be a row to delete.
        self._maybe_written = False
        self._failing = False

    async def keep_alive(self) -> None:
        """Register at once, then beat every interval; runs until cancelled."""
        registered = False
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    if registered:
                        registered = await self._beat()
                    if not registered:
                        await self._register()
                        registered = True
            except Exception as exc:  # never let the registry take its owner down
                self._failed(exc)
            else:
                self._recovered()
            await asyncio.sleep(self.interval)

    async def leave(self) -> None:
        """Delete the row (if one may have been written); log, never raise, on failure."""
        if not self._maybe_written:
            return
        try:
            async with (
                asyncio.timeout(_UNREGISTER_GRACE_S),
                autocommit_connection(self.pool) as conn,
            ):
                await _store.unregister_worker(conn, self.schema, self.member)
        except Exception as exc:
            log.warning(
                "%s %s could not leave the worker registry (%s); its row will read as stale",
                self.kind,
                self.member,
                _describe(exc, _UNREGISTER_GRACE_S),
            )

    async def _register(self) -> None:
        params = {**self._row, "in_flight": self._in_flight(), "started_at": self._started_at}
        async with autocommit_connection(self.pool) as conn:
            self._maybe_written = True
            self._started_at = await _store.register_worker(conn, self.schema, params)

    async def _beat(self) -> bool:
        """Refresh the heartbeat; False if there is no row to refresh."""
        async with autocommit_connection(self.pool) as conn:
            return await _store.heartbeat(conn, self.schema, self.member, self._in_flight())

    def _failed(self, exc: Exception) -> None:
        if self._failing:
            return
        self._failing = True
        expected = isinstance(exc, psycopg.Error | PoolTimeout | TimeoutError)
        log.warning(
            "%s %s: heartbeat failed (%s); retrying every %g s, quietly until it works again",
            self.kind,
            self.member,
            _describe(exc, self._timeout),
            self.interval,
            exc_info=None if expected else exc,
        )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("%s %s: heartbeat works again", self.kind, self.member)


async def list_workers(
    pool: AsyncConnectionPool,
    *,
    schema: str = "commandbus",
    domain: str | None = None,
    kind: str | None = None,
) -> list[WorkerInfo]:
    """The worker registry: running workers and process reply routers, including stale
    rows left by processes killed hard (``stale`` is True once a row's heartbeat is older
    than three of its heartbeat intervals).

    ``domain`` filters on a worker's domain or a router's reply queue; ``kind`` on
    ``"worker"`` or ``"router"``. Sorted by domain, kind and start time.
    """
    params = {
        "domain": None if domain is None else check_name("domain", domain),
        "kind": None if kind is None else _check_kind(kind),
        "stale_after": float(STALE_AFTER_INTERVALS),
    }
    check_schema(schema)
    async with autocommit_connection(pool) as conn:
        return await fetch_workers(conn, schema, params)


def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    assert isinstance(kind, str)
    return kind


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {timeout:g} s: database down or pool exhausted"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
