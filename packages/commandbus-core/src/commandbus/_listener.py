"""LISTEN on one channel and turn notifications into an asyncio wake-up event.

Notifications are only a hint that work may be there: the reader always polls too, so a
lost notification (reconnect, overflow) costs at most one poll interval.

LISTEN needs a session of its own on the server: behind PgBouncer in transaction pooling
the pool's connection goes back to PgBouncer after each transaction and notifications
never arrive. ``conninfo`` then names a direct connection (bypassing PgBouncer) that the
listener opens itself, outside the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus._liveness import with_liveness

__all__ = ["listen"]

log = logging.getLogger("commandbus.listener")


async def listen(
    pool: AsyncConnectionPool,
    channel: str,
    wake: asyncio.Event,
    ready: asyncio.Event,
    *,
    retry_delay: float = 1.0,
    conninfo: str | None = None,
) -> None:
    """Run until cancelled, holding one pool connection while connected (or, with
    ``conninfo``, a connection of its own to that server)."""
    while True:
        _stop_if_cancelled()
        try:
            if conninfo is not None:
                await _listen_direct(conninfo, channel, wake, ready)
            else:
                await _listen_pooled(pool, channel, wake, ready)
        except psycopg.Error as exc:
            _stop_if_cancelled()
            log.warning("listener on %r lost its connection (%s); retrying", channel, exc)
            # The server probably restarted: every idle connection in the pool is dead
            # too. Have the pool test and replace them now, or each fetch would draw one
            # dead connection per retry (seconds per idle connection before work resumes).
            with contextlib.suppress(Exception):
                await pool.check()
            wake.set()
            await asyncio.sleep(retry_delay)


async def _listen_pooled(
    pool: AsyncConnectionPool, channel: str, wake: asyncio.Event, ready: asyncio.Event
) -> None:
    async with pool.connection() as conn:
        lent_in_autocommit = conn.autocommit
        await conn.set_autocommit(True)
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            _stop_if_cancelled()
            ready.set()
            wake.set()  # anything sent while we were not listening
            async for _ in conn.notifies():
                wake.set()
        finally:
            await _release(conn, lent_in_autocommit)


async def _listen_direct(
    conninfo: str, channel: str, wake: asyncio.Event, ready: asyncio.Event
) -> None:
    conn = await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, **with_liveness(conninfo)
    )
    try:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        ready.set()
        wake.set()
        async for _ in conn.notifies():
            wake.set()
        raise psycopg.OperationalError("the notification stream ended")
    finally:
        with contextlib.suppress(psycopg.Error):
            await asyncio.shield(conn.close())


def _stop_if_cancelled() -> None:
    """Raise CancelledError if the listener was cancelled but the cancellation did not
    reach us as one: while a connection fails, psycopg (cancelling its query) or the
    pool may end it with an error of their own, or none. Listening again would make the
    listener outlive its consumer's stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _release(conn: psycopg.AsyncConnection, autocommit: bool) -> None:
    """Leave the pooled connection as we found it (not listening, in the autocommit mode
    it was lent in), or close it so the pool replaces it."""
    try:
        await asyncio.shield(_reset(conn, autocommit))
    except psycopg.Error:
        with contextlib.suppress(psycopg.Error):
            await conn.close()
    except asyncio.CancelledError:
        # Stopped while resetting (perhaps after the connection broke): close it, and
        # let the cancellation through, or the listener would go on listening.
        with contextlib.suppress(psycopg.Error):
            await conn.close()
        raise


async def _reset(conn: psycopg.AsyncConnection, autocommit: bool) -> None:
    await conn.execute("UNLISTEN *")
    await conn.set_autocommit(autocommit)
