"""The lifecycle of a service that works in rounds: the pruner and the scheduler.

Unlike :class:`commandbus._consumer.Consumer` (the worker and the router), such a service
leases nothing, holds no slots and listens to no channel: ``run()`` calls ``_round()``,
which does one round of work and says how long to wait for the next, until ``stop()``.
A failed round is logged and tried again after ``_RETRY_AFTER_FAILURE_S`` at most, so an
unreachable server costs one log line per retry, not a crash. Workers run these services
as background tasks; they can also run on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import ClassVar

from commandbus._errors import InvalidOperationError
from commandbus._validation import check_stop_timeout

__all__ = ["RoundService"]

#: After a failed round, the longest wait before the next.
_RETRY_AFTER_FAILURE_S = 5.0


class RoundService:
    """Base of :class:`~commandbus.Pruner` and :class:`~commandbus.Scheduler`."""

    #: The word for it in log lines and errors ("pruner", "scheduler").
    kind: ClassVar[str]
    log: ClassVar[logging.Logger]

    def _init_rounds(self) -> None:
        #: Set while ``run()`` runs (after its first round has started).
        self.ready = asyncio.Event()
        self._running = False
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _round(self) -> float:
        """One round of work; returns the seconds to wait before the next."""
        raise NotImplementedError

    def _first_wait(self) -> float:
        """Seconds to wait before the first round."""
        return 0.0

    @property
    def running(self) -> bool:
        return self._running

    async def run(self) -> None:
        """Work in rounds until :meth:`stop` is called or the task is cancelled."""
        if self._running:
            raise InvalidOperationError(f"this {self.kind} is running already")
        self._running = True
        self._stop_requested.clear()
        self._stopped.clear()
        self._task = asyncio.current_task()
        try:
            self.ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), self._first_wait())
            while not self._stop_requested.is_set():
                try:
                    wait = await self._round()
                except Exception:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        # A driver error raised while the round was being cancelled (a
                        # rollback on a cancelled query): the cancellation is what happened.
                        raise asyncio.CancelledError from None
                    self.log.exception("%s: a round failed; trying again", self.kind)
                    wait = _RETRY_AFTER_FAILURE_S
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), max(wait, 0.0))
        finally:
            self._running = False
            self._task = None
            self.ready.clear()
            self._stopped.set()

    async def stop(self, timeout: float | None = 30) -> None:
        """Stop after the round in progress (cancelled after ``timeout`` seconds)."""
        timeout = check_stop_timeout(timeout)
        if not self._running:
            await asyncio.sleep(0)  # a run() task created just before us starts first
            if not self._running:
                return
        self._stop_requested.set()
        task = self._task
        if task is asyncio.current_task():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped.wait()), timeout)
        except TimeoutError:
            if task is not None:
                task.cancel()
            await self._stopped.wait()
