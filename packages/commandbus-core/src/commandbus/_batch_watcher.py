"""Runs the ``on_complete`` callbacks of the batches one bus watches.

One asyncio task per bus, started on the first watch and ended when nothing is left to
watch (or by :meth:`BatchWatcher.close`). Every ``interval`` seconds it reads the
watched batches in one statement; for each that became terminal it *claims* the batch
(``UPDATE batches SET completed_at ... WHERE completed_at IS NULL``), one at a time just
before its callbacks, and runs the callbacks only if the claim succeeded. A batch's
callbacks therefore run at most once, across all processes; exactly once as long as the
watching process lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool, PoolClosed

from commandbus import _store
from commandbus.batches import OnBatchComplete, fetch_batches
from commandbus.models import BatchInfo

__all__ = ["BatchWatcher"]

log = logging.getLogger("commandbus.batches")


@dataclass
class _Watch:
    callbacks: list[OnBatchComplete]
    since: float = field(default_factory=time.monotonic)


class BatchWatcher:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        schema: str,
        *,
        interval: float = 0.5,
        missing_grace: float = 60.0,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.interval = interval
        #: A watched batch not visible after this many seconds is dropped: the
        #: transaction that created it (``create_batch(conn=...)``) rolled back.
        self.missing_grace = missing_grace
        self._watched: dict[uuid.UUID, _Watch] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def watching(self) -> int:
        return len(self._watched)

    def watch(self, batch_id: uuid.UUID, callback: OnBatchComplete) -> None:
        entry = self._watched.get(batch_id)
        if entry is None:
            self._watched[batch_id] = _Watch([callback])
        else:
            entry.callbacks.append(callback)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="commandbus-batch-watcher")

    async def close(self) -> None:
        """Stop watching; callbacks not yet run are dropped (the state stays in the database)."""
        task, self._task = self._task, None
        self._watched.clear()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while self._watched:
            try:
                await self.poll()
            except PoolClosed:  # nothing can be polled any more: retrying would log forever
                log.error(
                    "the pool was closed while %d batches were watched; their on_complete "
                    "callbacks are dropped (close the bus before its pool)",
                    len(self._watched),
                )
                self._watched.clear()
                return
            except Exception:
                log.exception("polling %d watched batches failed; retrying", len(self._watched))
            if self._watched:
                await asyncio.sleep(self.interval)

    async def poll(self) -> None:
        """One round: run the callbacks of every watched batch that became terminal."""
        ids = list(self._watched)
        found = await fetch_batches(self.pool, self.schema, ids)
        for info in (info for info, _ in found if info.is_terminal):
            if info.batch_id not in self._watched:
                continue
            # Claimed one at a time, just before its callbacks run: a close() during a
            # callback leaves the batches not reached yet claimable by another watcher.
            won = await self._claim(info)
            entry = self._watched.pop(info.batch_id, None)
            if entry is None:
                continue
            if not won:
                log.info("batch %s: on_complete was claimed elsewhere; not run here", info.batch_id)
                continue
            for callback in entry.callbacks:
                await _invoke(callback, info)
        now = time.monotonic()
        visible = {info.batch_id for info, _ in found}
        for batch_id in ids:
            entry = self._watched.get(batch_id)
            if batch_id not in visible and entry and now - entry.since > self.missing_grace:
                del self._watched[batch_id]
                log.warning(
                    "batch %s never became visible (its transaction rolled back?); "
                    "dropping its on_complete callback",
                    batch_id,
                )

    async def _claim(self, info: BatchInfo) -> bool:
        """Whether this watcher claimed the batch (and so runs its callbacks)."""
        async with self.pool.connection() as conn:
            return await _store.claim_batches(
                conn, self.schema, [info.batch_id], [info.completed_at]
            )


async def _invoke(callback: OnBatchComplete, info: BatchInfo) -> None:
    try:
        result = callback(info)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("on_complete callback of batch %s failed", info.batch_id)
