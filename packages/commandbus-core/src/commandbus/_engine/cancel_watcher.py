"""Operators' cancel requests, carried to the handlers running them.

While handlers run, the watcher reads cancel requests for their leases every
:data:`CANCEL_POLL_S` seconds: an async handler's deadline moves to now (it is cancelled
at its next await), a plain one sees ``ctx.cancel_requested``. A failed read is retried;
nothing ends the watcher but the worker's stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus import _store
from commandbus.handlers import HandlerContext

__all__ = ["CANCEL_POLL_S", "CancelWatcher", "Running"]

log = logging.getLogger("commandbus.worker")

#: Seconds between reads of cancel requests for the handlers running.
CANCEL_POLL_S = 1.0


class Running:
    """Handlers running now, by lease id: their context and (async) deadline scope."""

    def __init__(self) -> None:
        self._live: dict[int, tuple[HandlerContext, asyncio.Timeout | None]] = {}

    def add(self, lease_id: int, ctx: HandlerContext, deadline: asyncio.Timeout | None) -> None:
        self._live[lease_id] = (ctx, deadline)

    def remove(self, lease_id: int) -> None:
        self._live.pop(lease_id, None)

    def lease_ids(self) -> list[int]:
        return list(self._live)

    def __bool__(self) -> bool:
        return bool(self._live)

    def cancel(self, lease_id: int, request: dict[str, Any]) -> None:
        """Ask the handler of ``lease_id`` to stop, for ``request`` (operator, reason)."""
        live = self._live.get(lease_id)
        if live is None or live[0].cancel_request is not None:
            return
        ctx, deadline = live
        ctx.cancel_request = request
        if deadline is not None and not deadline.expired():
            # Already expiring (its timeout fired) is left to end as a timeout.
            with contextlib.suppress(RuntimeError):
                deadline.reschedule(asyncio.get_running_loop().time())


class CancelWatcher:
    def __init__(
        self, pool: AsyncConnectionPool, *, schema: str, domain: str, worker: str, running: Running
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._domain = domain
        self._worker = worker
        self._running = running

    async def run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            if not self._running:
                continue
            try:
                async with self._pool.connection() as conn:
                    requests = await _store.cancel_requests(
                        conn, self._schema, self._domain, self._worker, self._running.lease_ids()
                    )
            except Exception as exc:
                if not failing:  # once per outage: the fetch loop reports the database
                    log.warning("reading cancel requests failed (%s); retrying", exc)
                failing = True
                continue
            failing = False
            for lease_id, request in requests:
                self._running.cancel(lease_id, request)
