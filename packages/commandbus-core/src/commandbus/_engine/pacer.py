"""The fetch pacing: when a worker leases, how much, and how many dequeues at once.

The worker leases ahead of its free slots so that the next lease overlaps the running
handlers and the one in flight. Up to :data:`FETCH_LANES` dequeues run at once, the
second only while the queue is backlogged (the last dequeue filled its batch), so an
idle worker woken by one NOTIFY sends one dequeue. A lease that expired without an
outcome switches the first lane to rescuing (see :class:`LeaseBook`).

:class:`Slots` is the room for handlers, shared by the pacer (which fills it) and the
worker (which frees it as handlers return).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from commandbus._consumer import FETCH_STOP_GRACE_S
from commandbus._engine.fetcher import Fetcher
from commandbus._engine.lease_book import LeaseBook
from commandbus._outcomes import Lease
from commandbus._tasks import unless_stopped

__all__ = ["FETCH_BATCH", "FETCH_LANES", "Pacer", "Slots"]

log = logging.getLogger("commandbus.worker")

#: Most messages leased by one statement.
FETCH_BATCH = 200
#: Dequeue statements one worker may have in flight at once.
FETCH_LANES = 2

#: Runs one fetch, cut short by stop(): what it found and how long to wait for a
#: wake-up when it brought less than asked (``Consumer._fetch``).
Guard = Callable[[Awaitable[list[Lease]]], Awaitable[tuple[list[Lease], float]]]


class Slots:
    """Room for handlers: those running, those waiting for their outcome's recording,
    and those asked for by dequeues in flight."""

    def __init__(
        self,
        concurrency: int,
        in_flight: set[asyncio.Task[None]],
        freed: asyncio.Event,
        *,
        recording_allowance: int,
    ) -> None:
        self.concurrency = concurrency
        #: Leases whose task has not ended (handler running or outcome being recorded).
        self.in_flight = in_flight
        #: Set whenever a slot frees (a handler returned, a task ended, a lease came back).
        self.freed = freed
        #: Commands whose handler has not returned yet.
        self.handling = 0
        #: Slots asked for by dequeues in flight.
        self.reserved = 0
        #: Commands that may wait for their outcome to commit without holding a slot.
        self.recording_allowance = recording_allowance
        #: Lease in batches of at least this many free slots: fewer, larger dequeues.
        self.threshold = max(1, min(concurrency // 4, 50))

    def free(self) -> int:
        """Slots a new dequeue may fill. A slot frees when its handler returns:
        recording is batched and must not hold up new work. Up to
        ``recording_allowance`` commands may wait for their outcome to commit; beyond
        that, recording is the bottleneck and leasing more would only run leases down."""
        recording = len(self.in_flight) - self.handling
        backlog = max(0, recording - self.recording_allowance)
        return self.concurrency - self.handling - backlog - self.reserved

    def busy(self) -> bool:
        """Something of ours is leased or being leased."""
        return bool(self.in_flight or self.reserved)


class Pacer:
    """Runs a worker's fetch lanes until ``stopping()``; hands leases to ``start``."""

    def __init__(
        self,
        fetcher: Fetcher,
        slots: Slots,
        leases: LeaseBook,
        *,
        start: Callable[[list[Lease]], None],
        guard: Guard,
        stopping: Callable[[], bool],
        stop_requested: asyncio.Event,
        wake: asyncio.Event,
        poll_interval: float,
        stats: dict[str, int],
    ) -> None:
        self._fetcher = fetcher
        self._slots = slots
        self._leases = leases
        self._start = start
        self._guard = guard
        self._stopping = stopping
        self._stop_requested = stop_requested
        self._domain = fetcher.domain
        self._wake = wake
        self._poll_interval = poll_interval
        self._stats = stats
        self._backlogged = asyncio.Event()  # the last dequeue filled its batch

    async def run(self) -> None:
        """Lease while there is room, in up to :data:`FETCH_LANES` dequeues at once."""
        count = FETCH_LANES if self._slots.concurrency >= 2 * self._slots.threshold else 1
        if count == 1:
            await self._lane(first=True)
            return
        lanes = [asyncio.create_task(self._lane(first=i == 0)) for i in range(count)]
        try:
            pending = set(lanes)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for lane in done:
                    error = None if lane.cancelled() else lane.exception()
                    if error is not None:  # as it is (no exception group): "not migrated"
                        raise error
                self._backlogged.set()  # a lane ended (stopping): the parked ones end too
        finally:
            for lane in lanes:
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

    async def dequeue(self, limit: int) -> list[Lease]:
        """One dequeue of up to ``limit`` commands; notes an expired lease for rescue."""
        leases, expired = await self._fetcher.lease(
            "dequeue", limit, alone=not self._slots.in_flight
        )
        if expired:
            self._leases.expired_waiting = True
        self._stats["received"] += len(leases)
        return leases

    async def _lane(self, *, first: bool) -> None:
        slots, book = self._slots, self._leases
        loop = asyncio.get_running_loop()
        while not self._stopping():
            if not first and not self._backlogged.is_set():
                # Only a backlog is worth a second dequeue in flight; an idle worker
                # woken by one NOTIFY sends one dequeue, not one per lane.
                await self._backlogged.wait()
                continue
            if book.isolating:
                if not first:  # the first lane alone rescues; the others stand by
                    await self._slot_freed_within(self._poll_interval)
                    continue
                # A lease expired without an outcome: its command runs alone, once
                # nothing else of ours is in flight (see LeaseBook).
                wait = book.until_bystanders_done(loop.time())
                if wait is not None or slots.reserved:
                    await self._slot_freed_within(wait)
                    continue
                book.solo = False
                if book.expired_waiting and await self._rescue():
                    continue
            free = slots.free()
            if free < slots.threshold and slots.busy():
                # Wait for room for a worthwhile batch: leasing one message per freed
                # slot would cost one dequeue statement per command.
                slots.freed.clear()
                await slots.freed.wait()
                continue
            self._wake.clear()
            wanted = min(free, FETCH_BATCH)
            slots.reserved += wanted
            try:
                leases, pause = await self._guard(self.dequeue(wanted))
                self._start(leases)
            finally:
                slots.reserved -= wanted
                slots.freed.set()  # another lane may use what this one left
            if len(leases) == wanted:
                self._backlogged.set()
                continue
            self._backlogged.clear()
            if not book.expired_waiting:
                # The queue is drained: sleep until woken or polled.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)

    async def _slot_freed_within(self, timeout: float | None) -> None:
        self._slots.freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slots.freed.wait(), timeout)

    async def _rescue(self) -> bool:
        """Lease one command whose lease expired and run it alone; False if none is left."""
        try:
            leases = await unless_stopped(
                self._lease_rescue(), self._stop_requested, FETCH_STOP_GRACE_S
            )
        except Exception:
            log.exception("rescuing an expired lease failed for domain %r", self._domain)
            return False
        finally:
            self._leases.expired_waiting = False
        if not leases:
            return False
        self._stats["received"] += 1
        self._stats["rescued"] += 1
        self._leases.solo = True
        self._start(leases)
        return True

    async def _lease_rescue(self) -> list[Lease]:
        leases, _ = await self._fetcher.lease("rescue", 1, alone=not self._slots.in_flight)
        return leases
