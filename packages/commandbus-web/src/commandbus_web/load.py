"""Bounded work per request: the console's heavy reads, cached briefly and capped.

A *heavy* read (the overview's counts, the troubleshooting queue's pages, groups and
counts, a command search) runs in a slot of its kind: at most ``slots[kind]`` at a time,
so that a crowd on one page neither takes every connection of the pool nor makes the other
kinds of page wait behind it; more than :attr:`Load.waiting` reads queued for one kind are
turned away with :class:`Busy` (a 503 with ``Retry-After``) rather than piling up. A cached read
(the overview, the error groups) is shared: requests asking the same thing while it runs
wait for that one result, and reuse it for :attr:`Load.ttl` seconds. An operator's action
forgets every cached result, so the pages they see next are fresh.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
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


#: Slots per kind of heavy read: four in all, the console's own pool size.
SLOTS = {"tsq": 2, "search": 1, "overview": 1}


class Load:
    def __init__(
        self,
        *,
        slots: int | Mapping[str, int] = SLOTS,
        waiting: int = 32,
        ttl: float = 2.0,
        entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = dict(slots) if isinstance(slots, Mapping) else slots
        self.waiting = waiting
        self.ttl = ttl
        self._entries = entries
        self._clock = clock
        self._semaphores: dict[str, anyio.Semaphore] = {}
        self._queued: dict[str, int] = {}
        self._cache: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        #: Bumped by :meth:`forget`: a result computed across it is not cached.
        self._generation = 0

    async def heavy(self, compute: Callable[[], Awaitable[T]], kind: str = "tsq") -> T:
        """Run ``compute`` in a slot of ``kind`` (:class:`Busy` if too many wait for one)."""
        semaphore = self._semaphores.get(kind)
        if semaphore is None:  # made on first use: it belongs to the running loop
            size = self.slots if isinstance(self.slots, int) else self.slots.get(kind, 1)
            semaphore = self._semaphores[kind] = anyio.Semaphore(size)
        queued = self._queued.get(kind, 0)
        if queued >= self.waiting:
            raise Busy(f"{queued} {kind} reads are already waiting")
        self._queued[kind] = queued + 1
        try:
            async with semaphore:
                return await compute()
        finally:
            self._queued[kind] -= 1

    async def cached(
        self, key: Hashable, compute: Callable[[], Awaitable[T]], kind: str = "tsq"
    ) -> T:
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
            flight.value = await self.heavy(compute, kind)
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
