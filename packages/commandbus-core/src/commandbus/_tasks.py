"""Small asyncio helpers shared by the worker and the process router."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["wait_first"]


async def wait_first(awaitable: Any, watched: asyncio.Task[None]) -> None:
    """Await ``awaitable``, but surface the error if ``watched`` dies first."""
    waiter = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({waiter, watched}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if waiter not in done:
        watched.result()
