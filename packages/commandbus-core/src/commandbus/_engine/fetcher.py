"""The fetcher: leases commands of one domain, with the domain's limits and pause.

It owns the dequeue (and rescue) statements and the concurrency limits: a worker
declares its registry's ``max_running`` once, then re-reads now and then whether the
domain has limits (another deploy may add one), so a domain without limits leases with
the plain statement. Pause is in the statements themselves (one index probe).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from commandbus import _store
from commandbus._db import autocommit_connection
from commandbus._outcomes import Lease

__all__ = ["LIMITS_REREAD_S", "Fetcher"]

#: Seconds between reads of whether the domain has concurrency limits.
LIMITS_REREAD_S = 30.0


class Fetcher:
    """Leases for one worker: ``lease("dequeue", n)`` or ``lease("rescue", 1)``."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        schema: str,
        domain: str,
        worker: str,
        visibility_timeout: float,
        max_running: Callable[[], dict[str, int]],
    ) -> None:
        self._pool = pool
        self._schema = schema
        #: The domain it leases from.
        self.domain = domain
        self._worker = worker
        self._visibility_timeout = visibility_timeout
        self._max_running = max_running
        self._limited: bool | None = None  # the domain has concurrency limits
        self._limits_read_at = 0.0  # loop time the flag above was last read

    async def lease(self, statement: str, limit: int, *, alone: bool) -> tuple[list[Lease], bool]:
        """Up to ``limit`` leases, and whether a lease of the domain expired without an
        outcome (the worker then rescues it). ``alone``: nothing else of the worker is in
        flight (a single command leased now runs alone, see rescue.sql)."""
        params = {
            "domain": self.domain,
            "limit": limit,
            "lease": self._visibility_timeout,
            "worker": self._worker,
            "alone": alone,
        }
        async with autocommit_connection(self._pool) as conn:
            now = asyncio.get_running_loop().time()
            if self._limited is None or now - self._limits_read_at > LIMITS_REREAD_S:
                declared = self._max_running() if self._limited is None else {}
                self._limited = await _store.declare_limits(
                    conn, self._schema, self.domain, declared
                )
                self._limits_read_at = now
            limited = self._limited and statement == "dequeue"
            return await _store.lease_commands(
                conn, self._schema, statement, params, limited=limited
            )
