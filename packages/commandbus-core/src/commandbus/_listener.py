"""LISTEN on one channel and turn notifications into an asyncio wake-up event.

Notifications are only a hint that work may be there: the reader always polls too, so a
lost notification (reconnect, overflow) costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

__all__ = ["listen"]

log = logging.getLogger("commandbus.listener")


async def listen(
    pool: AsyncConnectionPool,
    channel: str,
    wake: asyncio.Event,
    ready: asyncio.Event,
    *,
    retry_delay: float = 1.0,
) -> None:
    """Run until cancelled, holding one pool connection while connected."""
    while True:
        try:
            async with pool.connection() as conn:
                lent_in_autocommit = conn.autocommit
                await conn.set_autocommit(True)
                try:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    ready.set()
                    wake.set()  # anything sent while we were not listening
                    async for _ in conn.notifies():
                        wake.set()
                finally:
                    await _release(conn, lent_in_autocommit)
        except psycopg.Error as exc:
            log.warning("listener on %r lost its connection (%s); retrying", channel, exc)
            # The server probably restarted: every idle connection in the pool is dead
            # too. Have the pool test and replace them now, or each fetch would draw one
            # dead connection per retry (seconds per idle connection before work resumes).
            with contextlib.suppress(Exception):
                await pool.check()
            wake.set()
            await asyncio.sleep(retry_delay)


async def _release(conn: psycopg.AsyncConnection, autocommit: bool) -> None:
    """Leave the pooled connection as we found it (not listening, in the autocommit mode
    it was lent in), or close it so the pool replaces it."""
    try:
        await asyncio.shield(_reset(conn, autocommit))
    except (psycopg.Error, asyncio.CancelledError):
        with contextlib.suppress(psycopg.Error):
            await conn.close()


async def _reset(conn: psycopg.AsyncConnection, autocommit: bool) -> None:
    await conn.execute("UNLISTEN *")
    await conn.set_autocommit(autocommit)
