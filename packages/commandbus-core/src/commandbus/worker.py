"""Worker: leases commands of one domain and runs their handlers.

Delivery is at-least-once. A lease (``visibility_timeout``) hides a message from other
workers; ownership is checked when the outcome is recorded, so a handler that overran
its lease cannot finish a command another worker has leased since.

The Worker wires parts with one job each (see :mod:`commandbus._engine`): the
:class:`~commandbus._engine.fetcher.Fetcher` leases, the executors run handlers, the
:class:`~commandbus._engine.completer.Completer` records outcomes in batches, the
:class:`~commandbus._engine.lease_book.LeaseBook` keeps crash isolation, and the
:class:`~commandbus._engine.cancel_watcher.CancelWatcher` carries operators' cancel
requests to running handlers, and the :class:`~commandbus._engine.pacer.Pacer` paces the
fetch lanes. What stays here is the wiring and running one leased command.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from commandbus._channels import command_channel
from commandbus._consumer import Consumer
from commandbus._engine.cancel_watcher import CancelWatcher, Running
from commandbus._engine.completer import Completer
from commandbus._engine.executors import AsyncExecutor, ThreadExecutor, current_owner
from commandbus._engine.fetcher import Fetcher
from commandbus._engine.lease_book import LeaseBook
from commandbus._engine.pacer import Pacer, Slots
from commandbus._errors import InvalidOperationError
from commandbus._observe import started_event
from commandbus._outcomes import (
    Lease,
    Outcome,
    outcome_for_cancel,
    outcome_for_exhausted,
    outcome_for_missing_handler,
)
from commandbus._registry import member_id
from commandbus._validation import (
    check_concurrency,
    check_handler_timeout,
    check_lease,
    check_name,
    check_poll_interval,
    check_positive_seconds,
    check_schema,
)
from commandbus.handlers import HandlerRegistry, is_async_handler
from commandbus.hooks import Handling, Hook, Hooks
from commandbus.pruner import DEFAULT_RETENTION, Pruner, Retention
from commandbus.retry import RetryPolicy
from commandbus.schedules import Schedule, Scheduler

__all__ = ["Worker", "current_worker"]

log = logging.getLogger("commandbus.worker")


def current_worker() -> Worker | None:
    """The worker whose plain-``def`` handler runs in this thread (and in what it calls
    through a ``SyncRuntime``), else None: ``stop()`` called from such a handler returns
    at once instead of waiting for that very handler."""
    owner = current_owner.get()
    return owner if isinstance(owner, Worker) else None


class Worker(Consumer):
    """Runs handlers for one domain until :meth:`stop` (or cancellation)."""

    kind = "worker"
    slot_name = "handlers"

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        domain: str,
        registry: HandlerRegistry,
        concurrency: int = 10,
        visibility_timeout: float = 30,
        poll_interval: float = 1.0,
        retry_policy: RetryPolicy | None = None,
        use_notify: bool = True,
        thread_pool_size: int | None = None,
        schema: str = "commandbus",
        hooks: Sequence[Hook] | None = None,
        retention: Retention | None = DEFAULT_RETENTION,
        schedules: Sequence[Schedule] = (),
        listen_conninfo: str | None = None,
        handler_timeout: float | None = None,
    ) -> None:
        self.pool = pool
        self.domain = check_name("domain", domain)
        self.registry = registry
        self.concurrency = check_concurrency("concurrency", concurrency)
        self.visibility_timeout = check_lease("visibility_timeout", visibility_timeout)
        self.poll_interval = check_poll_interval(poll_interval)
        self.retry_policy = retry_policy or RetryPolicy()
        # A policy's max_attempts given here cannot change commands' budgets (fixed when
        # sent): said once, at the first command whose budget differs (see _start).
        self._budget_unchecked = retry_policy is not None
        self.use_notify = use_notify
        self.listen_conninfo = listen_conninfo
        self.thread_pool_size = (
            self.concurrency
            if thread_pool_size is None
            else check_concurrency("thread_pool_size", thread_pool_size)
        )
        self.schema = check_schema(schema)
        #: Seconds a handler may run, for handlers registered without their own timeout.
        self.handler_timeout = (
            None
            if handler_timeout is None
            else check_handler_timeout("handler_timeout", handler_timeout)
        )
        #: Deletes finished work older than ``retention.older_than`` while the worker runs
        #: (one pruner at a time does the work across processes); None: ``retention=None``.
        self.pruner = None if retention is None else Pruner(pool, retention, schema=self.schema)
        #: Sends the commands of ``schedules`` at their ticks while the worker runs (each
        #: tick once, however many workers serve the same schedules).
        self.scheduler = Scheduler(pool, schedules, schema=self.schema) if schedules else None
        #: Callables that see each handler start and each recorded outcome (see hooks).
        self.hooks = Hooks(hooks)
        self.name = member_id(self)
        self._init_lifecycle()
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "received",
                "completed",
                "failed",
                "retried",
                "troubleshooting",
                "lease_lost",
                "rescued",
                "canceled",
            ),
            0,
        )
        self._leases = LeaseBook()
        self._running_handlers = Running()
        self._fetcher = Fetcher(
            pool,
            schema=self.schema,
            domain=self.domain,
            worker=self.name,
            visibility_timeout=self.visibility_timeout,
            max_running=functools.partial(registry.max_running, self.domain),
        )
        # Set up for each run (or drain) by _assemble:
        self._slots = Slots(
            self.concurrency, self._in_flight, self._slot_freed, recording_allowance=0
        )
        self._pacer: Pacer | None = None
        self._completer: Completer | None = None
        self._async: AsyncExecutor | None = None
        self._threads: ThreadExecutor | None = None

    # -- lifecycle -----------------------------------------------------------------

    def _member(self) -> str:
        return self.name

    def _scope(self) -> str:
        return self.domain

    def _channel(self) -> str:
        return command_channel(self.schema, self.domain)

    def _prepare(self) -> list[asyncio.Task[None]]:
        return self._assemble(with_clocks=True)

    def _assemble(self, *, with_clocks: bool) -> list[asyncio.Task[None]]:
        """Build the parts for one run; their background tasks. ``with_clocks``: the
        pruner and the scheduler too (a drain runs what is due, nothing on a clock)."""
        self._leases.reset()
        # Free a slot before its outcome is recorded only if the pool has a connection
        # beyond the handlers' and the listener's: recording then never waits for a
        # handler to end (a long one would let the finished command's lease expire).
        has_spare = self.pool.max_size > self.required_connections()
        self._slots = Slots(
            self.concurrency,
            self._in_flight,
            self._slot_freed,
            recording_allowance=self.concurrency if has_spare else 0,
        )
        self._pacer = Pacer(
            self._fetcher,
            self._slots,
            self._leases,
            start=self._start,
            guard=lambda fetch: self._fetch(fetch, log),
            stopping=lambda: self._stopping,
            stop_requested=self._stop_requested,
            wake=self._wake,
            poll_interval=self.poll_interval,
            stats=self.stats,
        )
        self._warn_if_threads_short()
        self._completer = completer = Completer(
            self.pool,
            schema=self.schema,
            domain=self.domain,
            worker=self.name,
            stats=self.stats,
            hooks=self.hooks,
            poll_interval=self.poll_interval,
            wake=self._wake.set,
            on_extended=self._extended,
        )
        parts = {
            "completer": completer,
            "running": self._running_handlers,
            "retry_policy": self.retry_policy,
            "timeout_for": self._timeout,
            "timed": bool(self.hooks),
        }
        self._async = AsyncExecutor(self.pool, **parts)
        self._threads = ThreadExecutor(
            self.pool, threads=self.thread_pool_size, name=self.domain, owner=self, **parts
        )
        watcher = CancelWatcher(
            self.pool,
            schema=self.schema,
            domain=self.domain,
            worker=self.name,
            running=self._running_handlers,
        )
        background = [
            asyncio.create_task(completer.run()),
            asyncio.create_task(watcher.run()),
        ]
        if with_clocks and self.pruner is not None:
            background.append(asyncio.create_task(self.pruner.run()))
        if with_clocks and self.scheduler is not None:
            background.append(asyncio.create_task(self.scheduler.run()))
        return background

    def _called_by_own_work(self) -> bool:
        # Plain-def handlers run in threads: current_worker() tells those.
        return current_worker() is self or super()._called_by_own_work()

    async def drain(self, *, timeout: float = 30.0) -> list[uuid.UUID]:
        """Run every command of the domain that is due now, then return (for tests and
        one-off jobs): rounds of lease-and-run until a round finds nothing. No LISTEN,
        registry entry, pruner or scheduler; outcomes are recorded as in :meth:`run`.

        Returns the ids of the commands run, in the order first leased. A retry
        scheduled for later is not waited for. ``timeout`` bounds the whole drain
        (TimeoutError; handlers still running are cancelled and their leases expire).
        """
        timeout = check_positive_seconds("timeout", timeout)
        if self._running:
            raise InvalidOperationError(
                f"worker for domain {self.domain!r} is running: drain() runs handlers "
                "itself, with a worker that is not"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ran: dict[uuid.UUID, None] = {}
        background = self._assemble(with_clocks=False)
        assert self._pacer is not None
        try:
            while True:
                leases = await self._pacer.dequeue(self.concurrency)
                if not leases:
                    return list(ran)
                for lease in leases:
                    ran.setdefault(lease.command.command_id, None)
                self._start(leases)
                pending = set(self._in_flight)
                _, late = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
                if late:
                    for task in late:
                        task.cancel()
                    await asyncio.wait(late)
                    raise TimeoutError(
                        f"drain: {len(late)} handler(s) of domain {self.domain!r} still "
                        "running at the deadline were cancelled"
                    )
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            try:
                await self._after_background()
            finally:
                await self._release()

    # -- fetching and running ------------------------------------------------------

    async def _fetch_loop(self) -> None:
        assert self._pacer is not None
        await self._pacer.run()

    def _start(self, leases: list[Lease]) -> None:
        if not leases:
            return
        self._leases.hold(
            (lease.lease_id for lease in leases),
            asyncio.get_running_loop().time() + self.visibility_timeout,
        )
        if self._budget_unchecked:
            self._warn_if_budget_differs(leases)
        for lease in leases:
            task = asyncio.create_task(self._process(lease))
            self._slots.handling += 1
            self._in_flight.add(task)
            task.add_done_callback(functools.partial(self._on_task_done, lease.lease_id))

    def _on_task_done(self, lease_id: int, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._leases.release(lease_id)
        if self._completer is not None:
            self._completer.durations.pop(lease_id, None)  # an outcome not recorded
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("unexpected worker error", exc_info=task.exception())

    def _extended(self, lease_id: int, seconds: float) -> None:
        self._leases.extend(lease_id, asyncio.get_running_loop().time() + seconds)

    # -- running handlers ----------------------------------------------------------

    async def _process(self, lease: Lease) -> None:
        try:
            outcome = await self._handle(lease)
        finally:
            self._slots.handling -= 1
            self._slot_freed.set()
        if outcome is not None and self._completer is not None:
            # A failure to record was logged once by the completer; the lease will expire.
            with contextlib.suppress(Exception):
                await self._completer.record(outcome)

    async def _handle(self, lease: Lease) -> Outcome | None:
        """Run the command's handler; its outcome, None if recorded already."""
        if lease.cancel_request is not None:  # canceled while it waited for a retry
            return outcome_for_cancel(lease, lease.cancel_request)
        if lease.counted_attempt > lease.max_attempts:
            return outcome_for_exhausted(lease)
        handler = self.registry.get(self.domain, lease.command.command_type)
        if handler is None:
            return outcome_for_missing_handler(lease)
        executor = self._async if is_async_handler(handler) else self._threads
        assert executor is not None
        if self.hooks:
            pending = self.hooks.notify(started_event(lease, self.name))
            if pending is not None:
                await pending
        if not self.hooks.wraps:
            return await executor.run(handler, lease)
        run = Handling(lease.command, lease.attempt, self.name)
        with self.hooks.handling(run):
            outcome = await executor.run(handler, lease)
            if outcome is None:  # recorded already, in the handler's transaction
                run.outcome = "COMPLETED"
            else:
                run.outcome = outcome.event_type
                run.error_type = outcome.error_type
                run.error_code = outcome.error_code
                run.error_message = outcome.error_message
        return outcome

    def _timeout(self, lease: Lease) -> float | None:
        own = self.registry.timeout(self.domain, lease.command.command_type)
        return self.handler_timeout if own is None else own

    def _warn_if_budget_differs(self, leases: list[Lease]) -> None:
        """Warn once: RetryPolicy.max_attempts does not apply to commands sent with their
        own budget (every command has one: send(max_attempts=...) or the bus's default)."""
        policy = self.retry_policy.max_attempts
        for lease in leases:
            if lease.max_attempts != policy:
                self._budget_unchecked = False
                log.warning(
                    "worker %s: RetryPolicy(max_attempts=%d) does not apply to command %s, "
                    "sent with max_attempts=%d: a command's attempt budget is fixed when it "
                    "is sent (send(max_attempts=...) or CommandBus(default_max_attempts=...)); "
                    "the worker's policy sets only the backoff between attempts",
                    self.name,
                    policy,
                    lease.command.command_id,
                    lease.max_attempts,
                )
                return

    def _warn_if_threads_short(self) -> None:
        """Plain-``def`` handlers beyond the thread count wait for a thread while their
        lease runs: with slow handlers they may be redelivered, and run twice."""
        handlers = [self.registry.get(d, kind) for d, kind in self.registry if d == self.domain]
        plain = any(h is not None and not is_async_handler(h) for h in handlers)
        if plain and self.thread_pool_size < self.concurrency:
            log.warning(
                "worker %s: concurrency %d but only %d handler threads for plain-def "
                "handlers; leased commands may wait for a thread while their lease runs "
                "(set thread_pool_size >= concurrency)",
                self.name,
                self.concurrency,
                self.thread_pool_size,
            )

    # -- stopping ------------------------------------------------------------------

    async def _after_background(self) -> None:
        if self._completer is not None:
            self._completer.abandon_pending()

    async def _release(self) -> None:
        threads, self._threads = self._threads, None
        if threads is not None:
            await threads.close(worker=self.name)
