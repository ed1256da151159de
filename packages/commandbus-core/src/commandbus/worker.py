"""Worker: leases commands of one domain and runs their handlers.

Delivery is at-least-once. A lease (``visibility_timeout``) hides a message from other
workers; ownership is checked when the outcome is recorded, so a handler that overran
its lease cannot finish a command another worker has leased since. Outcomes of handlers
that did not use ``ctx.conn`` are recorded in batches by one completer task.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from commandbus import _sql
from commandbus._channels import command_channel
from commandbus._consumer import FETCH_STOP_GRACE_S, Consumer
from commandbus._db import autocommit_connection, fetch_all, fetch_one, tuple_cursor
from commandbus._errors import HandlerTimeoutError, InvalidOperationError
from commandbus._handler_conn import LentConnection, lent_to_handler
from commandbus._observe import finished_event, log_outcome, started_event
from commandbus._outcomes import (
    Lease,
    Outcome,
    finish_params,
    outcome_for_cancel,
    outcome_for_error,
    outcome_for_exhausted,
    outcome_for_missing_handler,
    outcome_for_result,
)
from commandbus._registry import member_id
from commandbus._sync_handler_conn import SyncHandlerConnections
from commandbus._tasks import unless_stopped
from commandbus._validation import (
    check_name,
    check_positive_int,
    check_positive_seconds,
    check_schema,
)
from commandbus.handlers import (
    ConnectionWanted,
    HandlerContext,
    HandlerRegistry,
    is_async_handler,
)
from commandbus.hooks import Handling, Hook, Hooks
from commandbus.models import Command, CommandStatus
from commandbus.pruner import DEFAULT_RETENTION, Pruner, Retention
from commandbus.retry import RetryPolicy
from commandbus.schedules import Schedule, Scheduler

__all__ = ["Worker", "current_worker"]

log = logging.getLogger("commandbus.worker")

#: Most outcomes recorded by one statement; larger batches stop paying off.
_FINISH_BATCH = 200
#: Transaction states a handler's connection must not go back to the pool in.
#: Errors that say the database is out of reach, not that a row is bad.
_UNREACHABLE = (psycopg.OperationalError, PoolTimeout)
#: At shutdown, how long outcome statements in flight may still take.
_FINISH_GRACE_S = 5.0
#: Outcome statements in flight at once.
_FINISHERS = 4
#: Most messages leased by one statement.
_FETCH_BATCH = 200
#: Seconds between reads of cancel requests for the handlers running.
CANCEL_POLL_S = 1.0
#: Seconds between reads of whether the domain has concurrency limits.
_LIMITS_REREAD_S = 30.0


_current_worker: contextvars.ContextVar[Worker | None] = contextvars.ContextVar(
    "commandbus_current_worker", default=None
)


def current_worker() -> Worker | None:
    """The worker whose plain-``def`` handler runs in this thread (and in what it calls
    through a ``SyncRuntime``), else None: ``stop()`` called from such a handler returns
    at once instead of waiting for that very handler."""
    return _current_worker.get()


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
        self.concurrency = check_positive_int("concurrency", concurrency)
        self.visibility_timeout = check_positive_seconds("visibility_timeout", visibility_timeout)
        self.poll_interval = check_positive_seconds("poll_interval", poll_interval)
        self.retry_policy = retry_policy or RetryPolicy()
        # A policy's max_attempts given here cannot change commands' budgets (fixed when
        # sent): said once, at the first command whose budget differs (see _start).
        self._budget_unchecked = retry_policy is not None
        self.use_notify = use_notify
        self.listen_conninfo = listen_conninfo
        self.thread_pool_size = (
            self.concurrency
            if thread_pool_size is None
            else check_positive_int("thread_pool_size", thread_pool_size)
        )
        self.schema = check_schema(schema)
        #: Seconds a handler may run, for handlers registered without their own timeout.
        self.handler_timeout = (
            None
            if handler_timeout is None
            else check_positive_seconds("handler_timeout", handler_timeout)
        )
        #: Deletes finished work older than ``retention.older_than`` while the worker runs
        #: (one pruner at a time does the work across processes); None: ``retention=None``.
        self.pruner = None if retention is None else Pruner(pool, retention, schema=self.schema)
        #: Sends the commands of ``schedules`` at their ticks while the worker runs (each
        #: tick once, however many workers serve the same schedules).
        self.scheduler = Scheduler(pool, schedules, schema=self.schema) if schedules else None
        #: Callables that see each handler start and each recorded outcome (see hooks).
        self.hooks = Hooks(hooks)
        self._fetch_threshold = 1
        self._expired_waiting = False  # a lease of the domain expired: rescue it next
        self._solo = False  # a rescued command is running: lease nothing else meanwhile
        self._lease_expiry: dict[int, float] = {}  # in-flight lease id -> loop time it ends
        self._durations: dict[int, float] = {}  # lease id -> handler seconds (with hooks)
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
        self._handling = 0  # in-flight commands whose handler has not returned yet
        self._recording_allowance = 0
        self._warned_commits: set[str] = set()
        # Command types whose handler ran without touching ctx.conn (run without one),
        # and those that asked for it at least once (always get one).
        self._without_conn: set[str] = set()
        self._needs_conn: set[str] = set()
        self._pending: list[tuple[Outcome, asyncio.Future[bool]]] = []
        self._pending_ready = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._sync_conns: SyncHandlerConnections | None = None  # ctx.sync_conn, lazily
        self._limited: bool | None = None  # the domain has concurrency limits
        self._limits_read_at = 0.0  # loop time the flag above was last read
        # Plain handlers' calls left running past their timeout: not waited for at stop.
        self._abandoned: set[asyncio.Future[Any]] = set()
        # Handlers running now, by lease id: their context and (async) deadline scope,
        # for cancel requests to reach them.
        self._live: dict[int, tuple[HandlerContext, asyncio.Timeout | None]] = {}

    # -- lifecycle -----------------------------------------------------------------

    def _member(self) -> str:
        return self.name

    def _scope(self) -> str:
        return self.domain

    def _channel(self) -> str:
        return command_channel(self.schema, self.domain)

    def _prepare(self) -> list[asyncio.Task[None]]:
        self._handling = 0
        self._expired_waiting = self._solo = False  # the first dequeue tells
        # Lease in batches of at least this many free slots: fewer, larger dequeues.
        self._fetch_threshold = max(1, min(self.concurrency // 4, 50))
        # Free a slot before its outcome is recorded only if the pool has a connection
        # beyond the handlers' and the listener's: recording then never waits for a
        # handler to end (a long one would let the finished command's lease expire).
        has_spare = self.pool.max_size > self.required_connections()
        self._recording_allowance = self.concurrency if has_spare else 0
        self._warn_if_threads_short()
        self._executor = ThreadPoolExecutor(
            self.thread_pool_size, thread_name_prefix=f"commandbus-{self.domain}"
        )
        self._sync_conns = SyncHandlerConnections(
            self.pool, self.thread_pool_size, f"commandbus-{self.domain}-sync"
        )
        background = [
            asyncio.create_task(self._complete_loop()),
            asyncio.create_task(self._cancel_watch()),
        ]
        if self.pruner is not None:
            background.append(asyncio.create_task(self.pruner.run()))
        if self.scheduler is not None:
            background.append(asyncio.create_task(self.scheduler.run()))
        return background

    def _called_by_own_work(self) -> bool:
        # Plain-def handlers run in threads: current_worker() tells those.
        return current_worker() is self or super()._called_by_own_work()

    # -- fetching ------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        while not self._stopping:
            if self._expired_waiting or self._solo:
                # A lease expired without an outcome: its command runs alone, once
                # nothing else of ours is in flight, so that if it kills the worker again,
                # no other command dies (and is blamed) with it. Handlers whose own lease
                # expired are not waited for: they are suspects, not bystanders.
                wait = self._until_bystanders_done()
                if wait is not None:
                    self._slot_freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_freed.wait(), wait)
                    continue
                self._solo = False
                if self._expired_waiting and await self._rescue():
                    continue
            # A slot frees when its handler returns: recording the outcome is batched
            # and must not hold up new work. Up to `_recording_allowance` commands more
            # may wait for their outcome to commit; beyond that, recording is the
            # bottleneck and leasing more would only run leases down.
            recording = len(self._in_flight) - self._handling
            backlog = max(0, recording - self._recording_allowance)
            free = self.concurrency - self._handling - backlog
            if free < self._fetch_threshold and self._in_flight:
                # Wait for room for a worthwhile batch: leasing one message per freed
                # slot would cost one dequeue statement per command.
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._wake.clear()
            wanted = min(free, _FETCH_BATCH)
            leases, pause = await self._fetch(self._dequeue(wanted), log)
            self._start(leases)
            if len(leases) < wanted and not self._expired_waiting:
                # The queue is drained: sleep until woken or polled.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)

    def _start(self, leases: list[Lease]) -> None:
        expires = asyncio.get_running_loop().time() + self.visibility_timeout
        if self._budget_unchecked:
            self._warn_if_budget_differs(leases)
        for lease in leases:
            task = asyncio.create_task(self._process(lease))
            self._handling += 1
            self._in_flight.add(task)
            self._lease_expiry[lease.lease_id] = expires
            task.add_done_callback(functools.partial(self._on_task_done, lease.lease_id))

    def _until_bystanders_done(self) -> float | None:
        """Seconds until the next in-flight lease expires, or None if every in-flight
        command's lease has expired already (or nothing is in flight)."""
        now = asyncio.get_running_loop().time()
        live = [t - now for t in self._lease_expiry.values() if t > now]
        return min(live) if live else None

    async def _rescue(self) -> bool:
        """Lease one command whose lease expired and run it alone; False if none is left."""
        try:
            leases = await unless_stopped(
                self._lease("rescue", 1), self._stop_requested, FETCH_STOP_GRACE_S
            )
        except Exception:
            log.exception("rescuing an expired lease failed for domain %r", self.domain)
            return False
        finally:
            self._expired_waiting = False
        if not leases:
            return False
        self.stats["rescued"] += 1
        self._solo = True
        self._start(leases)
        return True

    async def _dequeue(self, limit: int) -> list[Lease]:
        return await self._lease("dequeue", limit)

    async def _lease(self, statement: str, limit: int) -> list[Lease]:
        params = {
            "domain": self.domain,
            "limit": limit,
            "lease": self.visibility_timeout,
            "worker": self.name,
            "alone": not self._in_flight,
        }
        # One round trip, and the dequeue statement stays prepared. In autocommit, the
        # statements of a pipeline up to its one Sync run as a single implicit
        # transaction: the lease settings hold for the dequeue alone, and a failure rolls
        # back both. (conn.transaction() here would add a round trip for its own sync.)
        async with autocommit_connection(self.pool) as conn:
            now = asyncio.get_running_loop().time()
            if self._limited is None or now - self._limits_read_at > _LIMITS_REREAD_S:
                # Declared once; re-read now and then: another deploy may add a limit.
                self._limited = await self._declare_limits(conn, first=self._limited is None)
                self._limits_read_at = now
            limited = self._limited and statement == "dequeue"
            query = self._lease_query(statement, limited)
            async with conn.pipeline():
                await tuple_cursor(conn).execute(_sql.query("lease_settings", self.schema))
                if limited:  # dequeues of the domain take turns from here to the commit
                    await tuple_cursor(conn).execute(_sql.query("limits_lock", self.schema), params)
                cur = await tuple_cursor(conn).execute(query, params)
            rows = await cur.fetchall()
        leases = [_lease(self.domain, row) for row in rows if row[2] is not None]
        if rows and rows[-1][-1]:
            self._expired_waiting = True
        self.stats["received"] += len(leases)
        return leases

    def _lease_query(self, statement: str, limited: bool) -> bytes:
        if statement != "dequeue":
            return _sql.query(statement, self.schema)
        return _dequeue_query(self.schema, limited)

    async def _declare_limits(self, conn: AsyncConnection, *, first: bool) -> bool:
        """Write the registry's concurrency limits for the domain (the first time);
        whether it has any (declared here or by other workers' registries)."""
        declared = self.registry.max_running(self.domain) if first else {}
        params = {
            "domain": self.domain,
            "command_types": list(declared),
            "max_running": list(declared.values()),
        }
        row = await fetch_one(conn, _sql.query("limits_declare", self.schema), params)
        return bool(row and row[0])

    def _on_task_done(self, lease_id: int, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._lease_expiry.pop(lease_id, None)
        self._durations.pop(lease_id, None)  # an outcome not recorded (lease lost)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("unexpected worker error", exc_info=task.exception())

    # -- running handlers ----------------------------------------------------------

    async def _process(self, lease: Lease) -> None:
        try:
            outcome = await self._handle(lease)
        finally:
            self._handling -= 1
            self._slot_freed.set()
        if outcome is not None:
            # A failure to record was logged once by the completer; the lease will expire.
            with contextlib.suppress(Exception):
                await self._record(outcome)

    async def _handle(self, lease: Lease) -> Outcome | None:
        """Run the command's handler; its outcome, None if recorded already."""
        if lease.cancel_request is not None:  # canceled while it waited for a retry
            return outcome_for_cancel(lease, lease.cancel_request)
        if lease.counted_attempt > lease.max_attempts:
            return outcome_for_exhausted(lease)
        handler = self.registry.get(self.domain, lease.command.command_type)
        if handler is None:
            return outcome_for_missing_handler(lease)
        if self.hooks:
            pending = self.hooks.notify(started_event(lease, self.name))
            if pending is not None:
                await pending
        if not self.hooks.wraps:
            return await self._run(handler, lease)
        run = Handling(lease.command, lease.attempt, self.name)
        with self.hooks.handling(run):
            outcome = await self._run(handler, lease)
            if outcome is None:  # recorded already, in the handler's transaction
                run.outcome = "COMPLETED"
            else:
                run.outcome = outcome.event_type
                run.error_type = outcome.error_type
                run.error_code = outcome.error_code
                run.error_message = outcome.error_message
        return outcome

    async def _run(self, handler: Any, lease: Lease) -> Outcome | None:
        if is_async_handler(handler):
            return await self._run_async(handler, lease)
        return await self._run_in_thread(handler, lease)

    async def _run_async(self, handler: Any, lease: Lease) -> Outcome | None:
        """Run the handler; with a pool connection (``ctx.conn``) only if it needs one.

        Each command type's first run gets a connection. A handler that did not touch
        ``ctx.conn`` then runs without one (no pool checkout, its outcome batched by the
        completer); should it ask for ``ctx.conn`` after all, it is run again at once,
        with a connection, within the same lease, and its type keeps one from then on.
        """
        kind = lease.command.command_type
        if kind in self._without_conn:
            ctx = self._context(lease, None, lazy=True)
            try:
                outcome = await self._call(handler, lease, ctx)
            except ConnectionWanted:
                pass
            else:
                if not ctx.conn_used:  # (a handler that swallowed ConnectionWanted)
                    return outcome
            self._without_conn.discard(kind)
            self._needs_conn.add(kind)
        # Every path below ends the transaction itself, so the connection goes back
        # without pool.connection()'s extra commit step (it costs per command).
        async with lent_to_handler(self.pool) as lent:
            ctx = self._context(lease, lent.conn)
            outcome_or_none = await self._run_on(lent, ctx, handler, lease)
        if not ctx.conn_used and kind not in self._needs_conn:
            self._without_conn.add(kind)
        return outcome_or_none

    async def _call(self, handler: Any, lease: Lease, ctx: HandlerContext) -> Outcome:
        """The handler's outcome: its result, or the failure it raised. Its deadline (a
        timeout, or now when an operator cancels it) cancels it at its next await."""
        started = time.perf_counter()
        limit = self._timeout(lease)
        deadline = asyncio.timeout(limit)
        try:
            try:
                async with deadline:
                    self._live[lease.lease_id] = (ctx, deadline)
                    result = await handler(lease.command, ctx)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the handler's own timeout, not ours
            if ctx.cancel_request is not None:  # canceled, even if it went on to return
                return outcome_for_cancel(lease, ctx.cancel_request)
            if deadline.expired():  # over its time, even if it swallowed the cancellation
                assert limit is not None
                return outcome_for_error(lease, HandlerTimeoutError(limit), self.retry_policy)
            return outcome_for_result(lease, result)
        except Exception as exc:
            return outcome_for_error(lease, exc, self.retry_policy)
        except (SystemExit, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and _cancelling():
                raise  # aimed at this task (worker stop): not the handler's failure
            return outcome_for_error(lease, exc, self.retry_policy)
        finally:
            self._live.pop(lease.lease_id, None)
            if self.hooks:
                self._durations[lease.lease_id] = time.perf_counter() - started

    def _timeout(self, lease: Lease) -> float | None:
        own = self.registry.timeout(self.domain, lease.command.command_type)
        return self.handler_timeout if own is None else own

    async def _run_on(
        self, lent: LentConnection, ctx: HandlerContext, handler: Any, lease: Lease
    ) -> Outcome | None:
        """Run with ``ctx.conn`` lent; if the handler used it, record the outcome in its
        transaction."""
        conn = lent.conn
        outcome = await self._call(handler, lease, ctx)
        status = conn.info.transaction_status
        if status == TransactionStatus.IDLE:
            if lent.handler_committed:
                self._warn_committed_on_its_own(lease)
            return outcome
        if status == TransactionStatus.INTRANS and outcome.status == CommandStatus.COMPLETED:
            try:
                recorded = await self._finish(conn, [outcome])
                if recorded:
                    await conn.commit()
                    await self._recorded(recorded)
                else:  # lease lost: another attempt owns the command and its writes
                    await conn.rollback()
                return None
            except Exception as exc:
                outcome = outcome_for_error(lease, exc, self.retry_policy)
        elif outcome.status == CommandStatus.COMPLETED:  # its writes cannot commit
            lost = status != TransactionStatus.INERROR  # the connection broke
            outcome = outcome_for_error(
                lease,
                RuntimeError(
                    "the connection of ctx.conn was lost: the handler's writes rolled back"
                    if lost
                    else "the handler's transaction on ctx.conn failed"
                ),
                self.retry_policy,
            )
        # A broken connection has rolled back already; the outcome is recorded elsewhere.
        with contextlib.suppress(psycopg.Error):
            await conn.rollback()
        return outcome

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

    def _warn_committed_on_its_own(self, lease: Lease) -> None:
        """A handler that used ctx.conn and left no transaction open committed its writes
        before the outcome (``commit()``): they are no longer atomic with it. Said once
        per command type."""
        command_type = lease.command.command_type
        if command_type in self._warned_commits:
            return
        self._warned_commits.add(command_type)
        log.warning(
            "handler for %s/%s used ctx.conn but left no transaction open: its writes were "
            "committed before the outcome, not with it. Do not commit ctx.conn: the worker "
            "commits the handler's statements with the outcome",
            self.domain,
            command_type,
        )

    async def _run_in_thread(self, handler: Any, lease: Lease) -> Outcome | None:
        """Run a plain handler in a handler thread; its outcome, or None if it was
        recorded there already, in the transaction of ``ctx.sync_conn``."""
        assert self._executor is not None
        ctx = self._context(lease, None)
        context = contextvars.copy_context()
        context.run(_current_worker.set, self)  # seen by the handler's thread only
        loop = asyncio.get_running_loop()
        began: asyncio.Future[None] = loop.create_future()  # the thread picked it up
        call = functools.partial(context.run, self._in_handler_thread, handler, lease, ctx, began)
        started = time.perf_counter()
        limit = self._timeout(lease)
        self._live[lease.lease_id] = (ctx, None)
        try:
            running = loop.run_in_executor(self._executor, call)
            if limit is not None and not await self._within(running, began, limit, ctx):
                self._abandoned.add(running)  # left to finish in its thread
                running.add_done_callback(self._abandoned.discard)
                running.add_done_callback(_discard_result)
                return outcome_for_error(lease, HandlerTimeoutError(limit), self.retry_policy)
            outcome, finished = await running
        except asyncio.CancelledError:
            if _cancelling():
                raise  # our own task's cancellation (worker stop); the thread runs on
            return outcome_for_error(lease, asyncio.CancelledError(), self.retry_policy)
        finally:
            self._live.pop(lease.lease_id, None)
            if self.hooks:
                self._durations[lease.lease_id] = time.perf_counter() - started
        if finished is None:  # not recorded in the handler's transaction
            if ctx.lent_sync_conn is not None and outcome.status == CommandStatus.COMPLETED:
                self._warn_committed_on_its_own(lease)
            return outcome
        recorded = self._held([outcome], finished)
        if recorded:
            await self._recorded(recorded)
        return None

    @staticmethod
    async def _within(
        running: asyncio.Future[Any], began: asyncio.Future[None], limit: float, ctx: HandlerContext
    ) -> bool:
        """Whether a plain handler ended within ``limit`` seconds of starting in its thread
        (time spent waiting for a free thread does not count). If not, it is marked timed
        out, unless its thread is already recording a success, which then wins."""
        await asyncio.wait({running, began}, return_when=asyncio.FIRST_COMPLETED)
        done, _ = await asyncio.wait({running}, timeout=limit)
        if done:
            return True
        with ctx.decided:
            if ctx.recording:  # too late to time it out: its outcome is being committed
                return True
            ctx.timed_out = True
        return False

    def _in_handler_thread(
        self,
        handler: Any,
        lease: Lease,
        ctx: HandlerContext,
        began: asyncio.Future[None],
    ) -> tuple[Outcome, set[Any] | None]:
        """In the handler's thread: call it, and if it wrote on ``ctx.sync_conn``, record a
        success in that transaction and commit. Returns the outcome, with the command ids
        ``finish.sql`` updated if it was recorded here (None if it is left to the
        completer)."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            began.get_loop().call_soon_threadsafe(_resolve, began)
        try:
            try:
                outcome = outcome_for_result(lease, handler(lease.command, ctx))
            except (Exception, SystemExit, KeyboardInterrupt, asyncio.CancelledError) as exc:
                # Raised in the handler's thread (sys.exit() from argparse, a cancelled
                # asyncio.run() inside it), they end that call, not the worker.
                outcome = outcome_for_error(lease, exc, self.retry_policy)
            if ctx.cancel_request is not None:  # canceled: its writes roll back
                outcome = outcome_for_cancel(lease, ctx.cancel_request)
            with ctx.decided:
                if ctx.timed_out:  # recorded as a timeout already: its writes roll back
                    return outcome, None
                ctx.recording = outcome.status == CommandStatus.COMPLETED
            conn = ctx.lent_sync_conn
            if conn is None:
                return outcome, None
            status = conn.info.transaction_status
            if status == TransactionStatus.IDLE:  # the handler committed on its own
                return outcome, None
            if status == TransactionStatus.INTRANS and outcome.status == CommandStatus.COMPLETED:
                try:
                    finished = self._finish_sync(conn, outcome)
                    if finished:
                        conn.commit()
                    else:  # lease lost: another attempt owns the command and its writes
                        conn.rollback()
                    return outcome, finished
                except Exception as exc:
                    outcome = outcome_for_error(lease, exc, self.retry_policy)
            elif outcome.status == CommandStatus.COMPLETED:  # its writes cannot commit
                outcome = outcome_for_error(
                    lease,
                    RuntimeError("the handler's transaction on ctx.sync_conn failed"),
                    self.retry_policy,
                )
            return outcome, None
        finally:
            if ctx.lent_sync_conn is not None and self._sync_conns is not None:
                self._sync_conns.give_back(ctx.lent_sync_conn)  # rolls back what is open

    def _finish_sync(self, conn: psycopg.Connection[Any], outcome: Outcome) -> set[Any]:
        """``finish.sql`` for one outcome on the handler's sync connection (its thread)."""
        params = finish_params([outcome], schema=self.schema, domain=self.domain, worker=self.name)
        with psycopg.Cursor(conn, row_factory=tuple_row) as cur:
            cur.execute(_sql.query("finish", self.schema), params)
            return {row[0] for row in cur.fetchall()}

    def _context(
        self, lease: Lease, conn: AsyncConnection | None, *, lazy: bool = False
    ) -> HandlerContext:
        return HandlerContext(
            attempt=lease.attempt,
            max_attempts=lease.max_attempts,
            msg_id=lease.msg_id,
            extend=functools.partial(self._extend_lease, lease, conn),
            loop=asyncio.get_running_loop(),
            conn=conn,
            forgiven=lease.forgiven,
            lazy=lazy,
            sync_conns=self._sync_conns if conn is None and not lazy else None,
        )

    async def _extend_lease(
        self, lease: Lease, handler_conn: AsyncConnection | None, seconds: float
    ) -> None:
        seconds = check_positive_seconds("seconds", seconds)
        params = {
            "command_id": lease.command.command_id,
            "domain": self.domain,
            "lease_id": lease.lease_id,
            "worker": self.name,
            "seconds": seconds,
        }
        own = (
            handler_conn
            if handler_conn is not None
            and (handler_conn.info.transaction_status == TransactionStatus.IDLE)
            else None
        )
        # The extension must commit now to be seen by other workers: on the handler's
        # own connection only while it has no transaction open, else on a pool connection.
        async with _borrowed(self.pool, own) as conn:
            row = await fetch_one(conn, _sql.query("extend_lease", self.schema), params)
            await AsyncConnection.commit(conn)  # not the lent conn's: that notes handler commits
            if row is None:
                raise InvalidOperationError(
                    f"lease on command {lease.command.command_id} was lost: it expired and "
                    "another worker has leased it"
                )
        if lease.lease_id in self._lease_expiry:
            self._lease_expiry[lease.lease_id] = asyncio.get_running_loop().time() + seconds

    # -- cancel requests -----------------------------------------------------------

    async def _cancel_watch(self) -> None:
        """While handlers run, read operators' cancel requests for them every
        :data:`CANCEL_POLL_S` seconds: an async handler's deadline moves to now (it is
        cancelled at its next await), a plain one sees ``ctx.cancel_requested``. Nothing
        ends this loop but the worker's stop: a failed read is retried."""
        failing = False
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            if not self._live:
                continue
            try:
                requests = await self._cancel_requests()
            except Exception as exc:
                if not failing:  # once per outage: the fetch loop reports the database
                    log.warning("reading cancel requests failed (%s); retrying", exc)
                failing = True
                continue
            failing = False
            for lease_id, request in requests:
                self._apply_cancel(lease_id, request)

    async def _cancel_requests(self) -> list[tuple[Any, ...]]:
        params = {"domain": self.domain, "worker": self.name, "lease_ids": list(self._live)}
        async with self.pool.connection() as conn:
            return await fetch_all(conn, _sql.query("cancel_requests", self.schema), params)

    def _apply_cancel(self, lease_id: int, request: dict[str, Any]) -> None:
        live = self._live.get(lease_id)
        if live is None or live[0].cancel_request is not None:
            return
        ctx, deadline = live
        ctx.cancel_request = request
        if deadline is not None and not deadline.expired():
            # Already expiring (its timeout fired) is left to end as a timeout.
            with contextlib.suppress(RuntimeError):
                deadline.reschedule(asyncio.get_running_loop().time())

    # -- recording outcomes --------------------------------------------------------

    async def _record(self, outcome: Outcome) -> None:
        """Hand the outcome to the completer and wait until it is committed."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, done))
        self._pending_ready.set()
        await done

    async def _complete_loop(self) -> None:
        """Record pending outcomes in batches, up to ``_FINISHERS`` statements at once:
        each waits for its commit's WAL flush, and concurrent commits share flushes."""
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._pending_ready.wait()
                self._pending_ready.clear()
                while self._pending:
                    if len(running) >= _FINISHERS:  # meanwhile the next batch grows
                        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    batch = self._pending[:_FINISH_BATCH]
                    del self._pending[:_FINISH_BATCH]
                    task = asyncio.create_task(self._record_batch(batch))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:  # let statements in flight finish, within bounds, then cancel the rest
            if running:
                _, late = await asyncio.wait(running, timeout=_FINISH_GRACE_S)
                for task in late:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)

    async def _record_batch(self, batch: list[tuple[Outcome, asyncio.Future[bool]]]) -> None:
        """Record a batch in one statement; if that fails, each outcome on its own, so one
        unrecordable row cannot hold back the others (their leases would expire)."""
        try:
            async with autocommit_connection(self.pool) as conn:  # the statement is atomic
                recorded = await self._finish(conn, [o for o, _ in batch])
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
        await self._recorded(recorded)
        for _, done in batch:
            if not done.done():
                done.set_result(True)

    async def _finish(self, conn: AsyncConnection, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """Record outcomes (the caller commits); returns those that still held their
        lease, for :meth:`_recorded` once committed."""
        params = finish_params(outcomes, schema=self.schema, domain=self.domain, worker=self.name)
        rows = await fetch_all(conn, _sql.query("finish", self.schema), params)
        return self._held(outcomes, {row[0] for row in rows})

    def _held(self, outcomes: Sequence[Outcome], finished: set[Any]) -> list[Outcome]:
        """The outcomes whose command ``finish.sql`` updated; the others lost their lease."""
        recorded = []
        for outcome in outcomes:
            if outcome.lease.command.command_id in finished:
                recorded.append(outcome)
                continue
            self.stats["lease_lost"] += 1
            log.warning(
                "command %s: lease lost before its outcome (%s) was recorded; "
                "it will be (or was) redelivered",
                outcome.lease.command.command_id,
                outcome.event_type,
            )
        return recorded

    async def _recorded(self, outcomes: list[Outcome]) -> None:
        """After the commit: count each outcome, log it, wake up for retries due before
        the next poll, and tell the hooks."""
        soonest: float | None = None
        for outcome in outcomes:
            self.stats[_STAT[outcome.event_type]] += 1
            log_outcome(outcome, self.name)
            delay = outcome.retry_delay
            if delay is not None and delay < self.poll_interval:
                soonest = delay if soonest is None else min(soonest, delay)
        if soonest is not None:
            # Nobody notifies for a retry that comes due: without this, a short backoff
            # would wait for the next poll (poll_interval) instead.
            asyncio.get_running_loop().call_later(soonest, self._wake.set)
        if self.hooks:
            for outcome in outcomes:
                duration = self._durations.pop(outcome.lease.lease_id, 0.0)
                pending = self.hooks.notify(finished_event(outcome, self.name, duration))
                if pending is not None:
                    await pending

    # -- stopping ------------------------------------------------------------------

    async def _after_background(self) -> None:
        for _, done in self._pending:
            done.cancel()
        self._pending.clear()

    async def _release(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            if self._abandoned:  # hung past their timeout: they may never return
                log.warning(
                    "worker %s: %d plain-def handler(s) still running past their timeout; "
                    "not waiting for them (the process cannot exit before they return)",
                    self.name,
                    len(self._abandoned),
                )
            else:
                await _join_executor(executor)
        sync_conns, self._sync_conns = self._sync_conns, None
        if sync_conns is not None and sync_conns.opened:  # no handler thread is left
            await asyncio.to_thread(sync_conns.close)

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


_STAT = {
    "COMPLETED": "completed",
    "FAILED": "failed",
    "RETRY_SCHEDULED": "retried",
    "MOVED_TO_TROUBLESHOOTING_QUEUE": "troubleshooting",
    "OPERATOR_CANCEL": "canceled",
}


def _lease(domain: str, row: Sequence[Any]) -> Lease:
    msg_id, lease_id, command_id, command_type, data, correlation_id, reply_to, batch_id = row[:8]
    created_at, attempts, max_attempts, forgiven, _priority, trace_context, cancel = row[8:15]
    command = Command(
        domain,
        command_type,
        command_id,
        data,
        correlation_id,
        reply_to,
        batch_id,
        created_at,
        trace_context,
    )
    return Lease(msg_id, lease_id, command, attempts, max_attempts, forgiven, cancel)


@contextlib.asynccontextmanager
async def _borrowed(
    pool: AsyncConnectionPool, conn: AsyncConnection | None
) -> AsyncIterator[AsyncConnection]:
    if conn is not None:
        yield conn
    else:
        async with pool.connection() as own:
            yield own


@functools.cache
def _dequeue_query(schema: str, limited: bool) -> bytes:
    """dequeue.sql with its pick fragment, rendered once per schema and variant."""
    pick = _sql.query("dequeue_pick_limited" if limited else "dequeue_pick", schema)
    return _sql.query("dequeue", schema, picked=pick.decode())


def _discard_result(future: asyncio.Future[Any]) -> None:
    """An abandoned handler thread's result: its outcome was recorded as a timeout."""
    if not future.cancelled():
        future.exception()  # retrieved: nothing to log twice


def _cancelling() -> bool:
    """Whether the current task is being cancelled (rather than merely seeing a
    CancelledError from something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _join_executor(executor: ThreadPoolExecutor) -> None:
    """Wait for handler threads to exit without blocking the loop or leaving a thread."""
    loop = asyncio.get_running_loop()
    joined = loop.create_future()

    def join() -> None:
        executor.shutdown(wait=True)
        loop.call_soon_threadsafe(_resolve, joined)

    thread = threading.Thread(target=join, name="commandbus-executor-join", daemon=True)
    thread.start()
    await joined
    thread.join()  # it has nothing left to do but exit
