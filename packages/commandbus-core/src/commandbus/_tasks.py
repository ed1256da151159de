"""Small asyncio helpers shared by the worker and the process router."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["unless_stopped", "wait_first"]

T = TypeVar("T")


async def wait_first(awaitable: Any, watched: asyncio.Task[None]) -> None:
    """Await ``awaitable``, but surface the error if ``watched`` dies first."""
    waiter = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({waiter, watched}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if waiter not in done:
        watched.result()


async def unless_stopped(fetch: Awaitable[list[T]], stop: asyncio.Event, grace: float) -> list[T]:
    """Await ``fetch``; once ``stop`` is set, give it at most ``grace`` seconds more.

    A fetch waiting on an unreachable server (a pool connection, a lost socket) must not
    hold up a shutdown for the pool's timeout. One cut short returns nothing: whatever it
    may have leased is delivered again when the lease expires.
    """
    task = asyncio.ensure_future(fetch)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return []
    except BaseException:
        task.cancel()
        # Let it unwind (its connection goes back to the pool) before we do; bounded,
        # since on a silent server even that may hang.
        await asyncio.wait({task}, timeout=grace)
        raise
    finally:
        stopping.cancel()
