"""The completer: records outcomes, in batches, and extends leases.

Outcomes of handlers that wrote nothing in their own transaction wait here briefly and
are recorded many to a statement, up to :data:`FINISHERS` statements at once (each
waits for its commit's WAL flush, and concurrent commits share flushes). A batch that
fails is retried one outcome at a time, so one unrecordable row cannot hold back the
others (their leases would expire). Every recorded outcome, wherever it was written,
then passes :meth:`Completer.recorded`: counted, logged, shown to hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from commandbus import _store
from commandbus._db import autocommit_connection
from commandbus._errors import InvalidOperationError
from commandbus._observe import finished_event, log_outcome
from commandbus._outcomes import Lease, Outcome, finish_params
from commandbus._validation import check_lease
from commandbus.hooks import Hooks

__all__ = ["FINISHERS", "Completer"]

log = logging.getLogger("commandbus.worker")

#: Most outcomes recorded by one statement; larger batches stop paying off.
FINISH_BATCH = 200
#: Outcome statements in flight at once.
FINISHERS = 4
#: At shutdown, how long outcome statements in flight may still take.
FINISH_GRACE_S = 5.0
#: Errors that say the database is out of reach, not that a row is bad.
_UNREACHABLE = (psycopg.OperationalError, PoolTimeout)

_STAT = {
    "COMPLETED": "completed",
    "FAILED": "failed",
    "RETRY_SCHEDULED": "retried",
    "MOVED_TO_TROUBLESHOOTING_QUEUE": "troubleshooting",
    "OPERATOR_CANCEL": "canceled",
}


class Completer:
    """Records one worker's outcomes and keeps its counters (``stats``)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        schema: str,
        domain: str,
        worker: str,
        stats: dict[str, int],
        hooks: Hooks,
        poll_interval: float,
        wake: Callable[[], None],
        on_extended: Callable[[int, float], None],
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._domain = domain
        self._worker = worker
        self._stats = stats
        self._hooks = hooks
        self._poll_interval = poll_interval
        self._wake = wake
        self._on_extended = on_extended
        self._pending: list[tuple[Outcome, asyncio.Future[bool]]] = []
        self._pending_ready = asyncio.Event()
        #: Handler seconds by lease id, kept only when hooks want them.
        self.durations: dict[int, float] = {}

    # -- batches ---------------------------------------------------------------------

    async def record(self, outcome: Outcome) -> None:
        """Queue the outcome for the next batch and wait until it is committed."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, done))
        self._pending_ready.set()
        await done

    async def run(self) -> None:
        """Record pending outcomes in batches until cancelled (then let statements in
        flight finish, within bounds)."""
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._pending_ready.wait()
                self._pending_ready.clear()
                while self._pending:
                    if len(running) >= FINISHERS:  # meanwhile the next batch grows
                        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    batch = self._pending[:FINISH_BATCH]
                    del self._pending[:FINISH_BATCH]
                    task = asyncio.create_task(self._record_batch(batch))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            if running:
                _, late = await asyncio.wait(running, timeout=FINISH_GRACE_S)
                for task in late:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)

    def abandon_pending(self) -> None:
        """At shutdown: outcomes never recorded (their leases will expire)."""
        for _, done in self._pending:
            done.cancel()
        self._pending.clear()

    async def _record_batch(self, batch: list[tuple[Outcome, asyncio.Future[bool]]]) -> None:
        try:
            async with autocommit_connection(self._pool) as conn:  # the statement is atomic
                recorded = await self.finish_on(conn, [o for o, _ in batch])
        except Exception as exc:
            waiting = [item for item in batch if not item[1].done()]
            if len(batch) > 1 and not isinstance(exc, _UNREACHABLE):
                for item in waiting:  # a bad row: find it, record the others
                    await self._record_batch([item])
                return
            if len(batch) > 1:
                log.error(
                    "recording %d outcomes failed (%s); their leases will expire", len(batch), exc
                )
                for _, done in waiting:
                    done.set_exception(exc)
                return
            log.exception(
                "recording the outcome of %s failed; its lease will expire",
                batch[0][0].lease.command.command_id,
            )
            if not batch[0][1].done():
                batch[0][1].set_exception(exc)
            return
        await self.recorded(recorded)
        for _, done in batch:
            if not done.done():
                done.set_result(True)

    # -- in a handler's transaction --------------------------------------------------

    def params(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        return finish_params(
            outcomes, schema=self._schema, domain=self._domain, worker=self._worker
        )

    async def finish_on(self, conn: AsyncConnection, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """Record outcomes on ``conn`` (the caller commits); those that still held their
        lease, for :meth:`recorded` once committed."""
        finished = await _store.finish(conn, self._schema, self.params(outcomes))
        return self.held(outcomes, finished)

    def finish_sync(self, conn: psycopg.Connection[Any], outcome: Outcome) -> set[Any]:
        """``finish`` for one outcome on a plain handler's connection, in its thread."""
        return _store.finish_sync(conn, self._schema, self.params([outcome]))

    def held(self, outcomes: Sequence[Outcome], finished: set[Any]) -> list[Outcome]:
        """The outcomes whose command was updated; the others lost their lease."""
        recorded = []
        for outcome in outcomes:
            if outcome.lease.command.command_id in finished:
                recorded.append(outcome)
                continue
            self._stats["lease_lost"] += 1
            log.warning(
                "command %s: lease lost before its outcome (%s) was recorded; "
                "it will be (or was) redelivered",
                outcome.lease.command.command_id,
                outcome.event_type,
            )
        return recorded

    async def recorded(self, outcomes: list[Outcome]) -> None:
        """After the commit: count each outcome, log it, wake the worker for retries due
        before its next poll, and tell the hooks."""
        soonest: float | None = None
        for outcome in outcomes:
            self._stats[_STAT[outcome.event_type]] += 1
            log_outcome(outcome, self._worker)
            delay = outcome.retry_delay
            if delay is not None and delay < self._poll_interval:
                soonest = delay if soonest is None else min(soonest, delay)
        if soonest is not None:
            # Nobody notifies for a retry that comes due: without this, a short backoff
            # would wait for the next poll (poll_interval) instead.
            asyncio.get_running_loop().call_later(soonest, self._wake)
        if self._hooks:
            for outcome in outcomes:
                duration = self.durations.pop(outcome.lease.lease_id, 0.0)
                pending = self._hooks.notify(finished_event(outcome, self._worker, duration))
                if pending is not None:
                    await pending

    # -- leases ----------------------------------------------------------------------

    async def extend_lease(
        self, lease: Lease, handler_conn: AsyncConnection | None, seconds: float
    ) -> None:
        """``ctx.extend_visibility``: the extension commits now to be seen by other
        workers: on the handler's own connection only while it has no transaction
        open, else on a pool connection."""
        seconds = check_lease("seconds", seconds)
        params = {
            "command_id": lease.command.command_id,
            "domain": self._domain,
            "lease_id": lease.lease_id,
            "worker": self._worker,
            "seconds": seconds,
        }
        own = handler_conn
        if own is not None and own.info.transaction_status != TransactionStatus.IDLE:
            own = None
        if own is not None:
            held = await _store.extend_lease(own, self._schema, params)
            await AsyncConnection.commit(own)  # not the lent conn's: that notes handler commits
        else:
            async with self._pool.connection() as conn:
                held = await _store.extend_lease(conn, self._schema, params)
        if not held:
            raise InvalidOperationError(
                f"lease on command {lease.command.command_id} was lost: it expired and "
                "another worker has leased it"
            )
        self._on_extended(lease.lease_id, seconds)
