"""Bounded work per request: the console's heavy reads, cached briefly and capped.

A *heavy* read (the overview's counts, the troubleshooting queue's error groups, a dry run,
a command search) runs at most :attr:`Load.slots` at a time, so that the pool keeps
connections for every other page; more than :attr:`Load.waiting` queued reads are turned
away with :class:`Busy` (a 503 with ``Retry-After``) rather than piling up. A cached read
(the overview, the error groups) is shared: requests asking the same thing while it runs
wait for that one result, and reuse it for :attr:`Load.ttl` seconds. An operator's action
forgets every cached result, so the pages they see next are fresh.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

__all__ = ["Busy", "Load"]

T = TypeVar("T")


class Busy(Exception):
    """Too many heavy reads already wait: try again shortly (503)."""

    retry_after = 2


@dataclass
class _Flight:
    done: anyio.Event = field(default_factory=anyio.Event)
    value: Any = None
    error: BaseException | None = None


class Load:
    def __init__(
        self,
        *,
        slots: int = 2,
        waiting: int = 32,
        ttl: float = 2.0,
        entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = slots
        self.waiting = waiting
        self.ttl = ttl
        self._entries = entries
        self._clock = clock
        self._semaphore: anyio.Semaphore | None = None
        self._queued = 0
        self._cache: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        #: Bumped by :meth:`forget`: a result computed across it is not cached.
        self._generation = 0

    async def heavy(self, compute: Callable[[], Awaitable[T]]) -> T:
        """Run ``compute`` in one of the heavy slots (:class:`Busy` if too many wait)."""
        if self._semaphore is None:  # made on first use: it belongs to the running loop
            self._semaphore = anyio.Semaphore(self.slots)
        if self._queued >= self.waiting:
            raise Busy(f"{self._queued} heavy reads are already waiting")
        self._queued += 1
        try:
            async with self._semaphore:
                return await compute()
        finally:
            self._queued -= 1

    async def cached(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """``compute``'s result for ``key``: fresh from the cache, from the request already
        computing it, or computed now in a heavy slot."""
        hit = self._cache.get(key)
        if hit is not None and self._clock() - hit[0] < self.ttl:
            value: T = hit[1]
            return value
        flight = self._flights.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            shared: T = flight.value
            return shared
        flight = self._flights[key] = _Flight()
        generation = self._generation
        try:
            flight.value = await self.heavy(compute)
        except Exception as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.error = Busy("the request computing this page went away")
            raise
        finally:
            del self._flights[key]
            flight.done.set()
        if generation == self._generation:
            self._cache[key] = (self._clock(), flight.value)
            self._cache.move_to_end(key)
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)
        result: T = flight.value
        return result

    def forget(self) -> None:
        """Drop every cached result (after an action changed what the pages show)."""
        self._generation += 1
        self._cache.clear()
