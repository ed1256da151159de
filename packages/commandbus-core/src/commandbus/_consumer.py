"""The lifecycle every long-running consumer shares: the worker and the reply router.

One place owns start (pool budget check, registry entry, LISTEN wake-up, ``ready``),
``stop(timeout)``, draining in-flight work and shutting down. A consumer supplies what
differs: its fetch loop, its wake-up channel, its registry identity, and what it sets up
before and tears down after a run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import ClassVar, TypeVar

from psycopg_pool import AsyncConnectionPool

from commandbus._errors import ConfigurationError, InvalidOperationError
from commandbus._listener import listen
from commandbus._registry import registered
from commandbus._tasks import unless_stopped, wait_first
from commandbus._validation import check_stop_timeout
from commandbus.migrations import fail_if_not_migrated, verify_at_start

__all__ = ["FETCH_STOP_GRACE_S", "STOP_CLEANUP_S", "Consumer"]

T = TypeVar("T")

#: After stop(), how long a fetch in progress may still take (a server that is down
#: would otherwise hold the shutdown for the pool's connection timeout).
FETCH_STOP_GRACE_S = 1.0
#: After a failed fetch, the longest wait before the next one.
_RETRY_AFTER_FAILURE_S = 1.0
#: stop(timeout) returns within timeout + this, whatever the network does: past it, what
#: is left of the shutdown (statements a silent server never answers) is cancelled.
STOP_CLEANUP_S = 3.0

log = logging.getLogger("commandbus.consumer")


class Consumer:
    """Base of :class:`~commandbus.Worker` and :class:`~commandbus.ProcessReplyRouter`."""

    #: "worker" or "router": the registry's kind, and the word in error messages.
    kind: ClassVar[str]
    #: How a slot's work is called in the budget message ("handlers", "replies").
    slot_name: ClassVar[str]

    pool: AsyncConnectionPool
    schema: str
    concurrency: int
    use_notify: bool
    poll_interval: float
    #: LISTEN on a connection of its own to this server (not one of the pool's), for
    #: pools behind PgBouncer in transaction pooling; None: a pool connection.
    listen_conninfo: str | None = None

    def _init_lifecycle(self) -> None:
        #: Set once the consumer listens for notifications and polls (useful in tests).
        self.ready = asyncio.Event()
        self._running = False
        self._stopping = False
        self._stop_timeout: float | None = None
        self._stopped = asyncio.Event()
        self._stop_requested = asyncio.Event()  # cuts short a fetch stuck on the server
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._run_task: asyncio.Task[None] | None = None  # the task running run()

    # -- what a consumer supplies ----------------------------------------------------

    def _member(self) -> str:
        """Its id in the worker registry."""
        raise NotImplementedError

    def _scope(self) -> str:
        """What it consumes, for the registry: a domain or a reply queue."""
        raise NotImplementedError

    def _channel(self) -> str:
        """The LISTEN channel that wakes it."""
        raise NotImplementedError

    def _prepare(self) -> list[asyncio.Task[None]]:
        """Set up a run (after the budget check); returns its own background tasks."""
        return []

    async def _fetch_loop(self) -> None:
        raise NotImplementedError

    async def _after_background(self) -> None:
        """At shutdown, once in-flight work and background tasks are gone."""

    async def _release(self) -> None:
        """Last step of a shutdown, whatever happened before."""

    def _called_by_own_work(self) -> bool:
        """Whether stop() is called from the consumer's own in-flight work."""
        return asyncio.current_task() in self._in_flight

    # -- lifecycle --------------------------------------------------------------------

    def required_connections(self) -> int:
        """Connections it may hold at once: one per slot, plus the listener (unless it
        listens on a connection of its own, ``listen_conninfo``)."""
        return self.concurrency + (1 if self.use_notify and self.listen_conninfo is None else 0)

    @property
    def running(self) -> bool:
        """True from :meth:`run`'s start until it has shut everything down."""
        return self._running

    async def run(self) -> None:
        """Consume until :meth:`stop` is called or the task is cancelled."""
        if self._running:
            raise InvalidOperationError(f"this {self.kind} is running already")
        self._check_pool()
        self._run_task = asyncio.current_task()
        self._running = True
        self._stopping = False
        self._stop_requested.clear()
        self._stopped.clear()
        background: list[asyncio.Task[None]] = []
        try:
            # The schema first: on one that is not migrated the consumer stops here, with
            # the one clear error, before the registry, the listener or a background task
            # (pruner, scheduler) has touched it and logged a failure of its own.
            await verify_at_start(self.pool, self.schema, self._stop_requested)
            background = self._prepare()
            async with registered(
                self.pool,
                schema=self.schema,
                member=self._member(),
                kind=self.kind,
                domain=self._scope(),
                concurrency=self.concurrency,
                in_flight=lambda: len(self._in_flight),
            ):
                if self.use_notify:
                    listener_ready = asyncio.Event()
                    background.append(
                        asyncio.create_task(
                            listen(
                                self.pool,
                                self._channel(),
                                self._wake,
                                listener_ready,
                                conninfo=self.listen_conninfo,
                            )
                        )
                    )
                    await wait_first(listener_ready.wait(), background[-1])
                self.ready.set()
                await self._fetch_loop()
                await self._drain(self._stop_timeout)
        finally:
            await self._shutdown(background)

    async def stop(self, timeout: float | None = 30) -> None:
        """Stop taking work; let in-flight work finish for up to ``timeout`` seconds.

        Work still running after the timeout is cancelled and delivered again when its
        lease expires. Returns once nothing of the consumer is left, except when called
        from its own in-flight work: it then only asks it to stop, and returns at once.
        """
        timeout = check_stop_timeout(timeout)
        if not self._running:
            await asyncio.sleep(0)  # a run() task created just before us starts first
            if not self._running:
                return
        self._stop_timeout = timeout
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        self._slot_freed.set()
        if self._called_by_own_work():
            return  # waiting for the caller would wait forever
        budget = None if timeout is None else max(timeout, 0) + STOP_CLEANUP_S - 1
        if await _waited(self._stopped, budget):
            return
        # Shutting down is stuck (a server that went silent: statements that never
        # answer, a handler blocked on its connection). The caller was promised an end.
        log.warning(
            "%s %r did not finish stopping within %g s (is the database reachable?); "
            "cancelling what is left; unfinished commands are delivered again when their "
            "leases expire",
            self.kind,
            self._scope(),
            budget,
        )
        if self._run_task is not None:
            self._run_task.cancel()
        await _waited(self._stopped, 1.0)  # what is still stuck ends when TCP gives up

    async def _fetch(self, fetch: Awaitable[list[T]], log: logging.Logger) -> tuple[list[T], float]:
        """One fetch of the loop, cut short by :meth:`stop`; with how long to wait for a
        wake-up if it brought less than asked. A failure stops the consumer if the schema
        is the cause; otherwise it is logged and the next try comes within a second, not a
        whole poll interval (a wake-up that came while the server was away, the
        listener's on reconnecting, was spent on this try)."""
        try:
            found = await unless_stopped(fetch, self._stop_requested, FETCH_STOP_GRACE_S)
        except Exception as exc:
            await fail_if_not_migrated(exc, self.pool, self.schema)
            log.exception("%s %r: fetching failed; retrying", self.kind, self._scope())
            return [], min(self.poll_interval, _RETRY_AFTER_FAILURE_S)
        return found, self.poll_interval

    async def _drain(self, grace: float | None) -> None:
        if self._in_flight:
            _, still_running = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in still_running:
                task.cancel()
            if still_running:
                await asyncio.wait(still_running)

    async def _shutdown(self, background: list[asyncio.Task[None]]) -> None:
        try:
            for task in list(self._in_flight):
                task.cancel()
            if self._in_flight:  # their cleanup may wait on a silent server: bounded
                await asyncio.wait(set(self._in_flight), timeout=STOP_CLEANUP_S)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._after_background()
        finally:
            try:
                await self._release()
            finally:
                self._running = False
                self.ready.clear()
                self._stopped.set()

    def _check_pool(self) -> None:
        max_size = getattr(self.pool, "max_size", None)
        if not isinstance(self.pool, AsyncConnectionPool) or max_size is None:
            raise ConfigurationError(
                f"{type(self).__name__} needs a psycopg_pool.AsyncConnectionPool, "
                f"got {type(self.pool).__name__}"
            )
        needed = self.required_connections()
        if max_size < needed:
            raise ConfigurationError(
                f"pool max_size={max_size} cannot serve this {self.kind}: concurrency="
                f"{self.concurrency} {self.slot_name} + {needed - self.concurrency} listener "
                f"connection need {needed}. Raise the pool's max_size to at least {needed} "
                "(plus what the rest of the process uses) or lower concurrency."
            )


async def _waited(event: asyncio.Event, timeout: float | None) -> bool:
    """Whether ``event`` was set within ``timeout`` seconds (None: wait for it)."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True
