"""Executors: run one handler for one lease and return its :class:`Outcome`.

:class:`AsyncExecutor` runs ``async def`` handlers on the loop, :class:`ThreadExecutor`
plain ``def`` ones in a bounded thread pool. Both return None instead of an outcome when
the handler wrote in its own transaction (``ctx.conn`` / ``ctx.sync_conn``): the outcome
was then recorded in that transaction, and committed with the handler's writes. Either
way the handler runs once per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from commandbus._engine.cancel_watcher import Running
from commandbus._engine.completer import Completer
from commandbus._errors import HandlerTimeoutError
from commandbus._handler_conn import HandlerConnection, LentConnection
from commandbus._outcomes import (
    Lease,
    Outcome,
    outcome_for_cancel,
    outcome_for_error,
    outcome_for_result,
)
from commandbus._sync_handler_conn import SyncHandlerConnections
from commandbus.handlers import HandlerContext
from commandbus.models import CommandStatus
from commandbus.retry import RetryPolicy

__all__ = ["AsyncExecutor", "ThreadExecutor", "current_owner"]

log = logging.getLogger("commandbus.worker")

#: The worker whose plain handler runs in this thread (see ``commandbus.current_worker``).
current_owner: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "commandbus_current_worker", default=None
)


class _Executor:
    def __init__(
        self,
        *,
        completer: Completer,
        running: Running,
        retry_policy: RetryPolicy,
        timeout_for: Callable[[Lease], float | None],
        timed: bool,
    ) -> None:
        self._completer = completer
        self._running = running
        self._retry_policy = retry_policy
        self._timeout_for = timeout_for
        self._timed = timed  # hooks want each handler's duration
        self._warned_commits: set[str] = set()

    def _took(self, lease: Lease, started: float) -> None:
        if self._timed:
            self._completer.durations[lease.lease_id] = time.perf_counter() - started

    def _failure(self, lease: Lease, exc: BaseException) -> Outcome:
        return outcome_for_error(lease, exc, self._retry_policy)

    def _warn_committed_on_its_own(self, lease: Lease, conn_name: str) -> None:
        """A handler that used its connection and left no transaction open committed its
        writes before the outcome: they are no longer atomic with it. Once per type."""
        command = lease.command
        if command.command_type in self._warned_commits:
            return
        self._warned_commits.add(command.command_type)
        log.warning(
            "handler for %s/%s used %s but left no transaction open: its writes were "
            "committed before the outcome, not with it. Do not commit %s: the worker "
            "commits the handler's statements with the outcome",
            command.domain,
            command.command_type,
            conn_name,
            conn_name,
        )


class AsyncExecutor(_Executor):
    """Runs ``async def`` handlers; ``ctx.conn`` is taken from the pool at first use."""

    def __init__(self, pool: AsyncConnectionPool, **parts: Any) -> None:
        super().__init__(**parts)
        self._pool = pool

    async def run(self, handler: Any, lease: Lease) -> Outcome | None:
        taken = HandlerConnection(self._pool)
        ctx = HandlerContext(
            attempt=lease.attempt,
            max_attempts=lease.max_attempts,
            msg_id=lease.msg_id,
            extend=functools.partial(self._extend, lease, taken),
            loop=asyncio.get_running_loop(),
            conn=taken,
            forgiven=lease.forgiven,
        )
        try:
            outcome = await self._call(handler, lease, ctx)
            lent = taken.lent
            if lent is None:  # no statement on ctx.conn: the completer records it
                return outcome
            return await self._settle(lent, lease, outcome)
        finally:
            # Every path ends the transaction itself, so the connection goes back without
            # pool.connection()'s extra commit step (it costs per command).
            await taken.give_back()

    async def _extend(self, lease: Lease, taken: HandlerConnection, seconds: float) -> None:
        lent = taken.lent
        await self._completer.extend_lease(lease, None if lent is None else lent.conn, seconds)

    async def _call(self, handler: Any, lease: Lease, ctx: HandlerContext) -> Outcome:
        """The handler's outcome: its result, or the failure it raised. Its deadline (a
        timeout, or now when an operator cancels it) cancels it at its next await."""
        started = time.perf_counter()
        limit = self._timeout_for(lease)
        deadline = asyncio.timeout(limit)
        try:
            try:
                async with deadline:
                    self._running.add(lease.lease_id, ctx, deadline)
                    result = await handler(lease.command, ctx)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the handler's own timeout, not ours
            if ctx.cancel_request is not None:  # canceled, even if it went on to return
                return outcome_for_cancel(lease, ctx.cancel_request)
            if deadline.expired():  # over its time, even if it swallowed the cancellation
                assert limit is not None
                return self._failure(lease, HandlerTimeoutError(limit))
            return outcome_for_result(lease, result)
        except Exception as exc:
            return self._failure(lease, exc)
        except (SystemExit, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and _cancelling():
                raise  # aimed at this task (worker stop): not the handler's failure
            return self._failure(lease, exc)
        finally:
            self._running.remove(lease.lease_id)
            self._took(lease, started)

    async def _settle(self, lent: LentConnection, lease: Lease, outcome: Outcome) -> Outcome | None:
        """The handler used ``ctx.conn``: record a success in its transaction and commit
        (None: recorded); anything else rolls its writes back and is returned."""
        conn = lent.conn
        status = conn.info.transaction_status
        if status == TransactionStatus.IDLE:
            if lent.handler_committed:
                self._warn_committed_on_its_own(lease, "ctx.conn")
            return outcome
        if status == TransactionStatus.INTRANS and outcome.status == CommandStatus.COMPLETED:
            try:
                recorded = await self._completer.finish_on(conn, [outcome])
                if recorded:
                    await conn.commit()
                    await self._completer.recorded(recorded)
                else:  # lease lost: another attempt owns the command and its writes
                    await conn.rollback()
                return None
            except Exception as exc:
                outcome = self._failure(lease, exc)
        elif outcome.status == CommandStatus.COMPLETED:  # its writes cannot commit
            lost = status != TransactionStatus.INERROR  # the connection broke
            outcome = self._failure(
                lease,
                RuntimeError(
                    "the connection of ctx.conn was lost: the handler's writes rolled back"
                    if lost
                    else "the handler's transaction on ctx.conn failed"
                ),
            )
        # A broken connection has rolled back already; the outcome is recorded elsewhere.
        with contextlib.suppress(psycopg.Error):
            await conn.rollback()
        return outcome


class ThreadExecutor(_Executor):
    """Runs plain ``def`` handlers in a bounded thread pool; ``ctx.sync_conn`` is lent on
    first use, in the handler's thread. A handler past its timeout is abandoned to
    finish in its thread (Python cannot stop a thread), its attempt recorded as failed."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        threads: int,
        name: str,
        owner: Any,
        **parts: Any,
    ) -> None:
        super().__init__(**parts)
        self._owner = owner
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=f"commandbus-{name}")
        self._sync_conns = SyncHandlerConnections(pool, threads, f"commandbus-{name}-sync")
        #: Calls left running past their timeout: not waited for at shutdown.
        self.abandoned: set[asyncio.Future[Any]] = set()

    @property
    def sync_conns_opened(self) -> bool:
        """Whether a handler asked for ``ctx.sync_conn`` (its pool opens on first use)."""
        return self._sync_conns.opened

    async def run(self, handler: Any, lease: Lease) -> Outcome | None:
        ctx = HandlerContext(
            attempt=lease.attempt,
            max_attempts=lease.max_attempts,
            msg_id=lease.msg_id,
            extend=functools.partial(self._completer.extend_lease, lease, None),
            loop=asyncio.get_running_loop(),
            forgiven=lease.forgiven,
            sync_conns=self._sync_conns,
        )
        context = contextvars.copy_context()
        context.run(current_owner.set, self._owner)  # seen by the handler's thread only
        loop = asyncio.get_running_loop()
        began: asyncio.Future[None] = loop.create_future()  # the thread picked it up
        call = functools.partial(context.run, self._in_thread, handler, lease, ctx, began)
        started = time.perf_counter()
        limit = self._timeout_for(lease)
        self._running.add(lease.lease_id, ctx, None)
        try:
            running = loop.run_in_executor(self._executor, call)
            if limit is not None and not await _within(running, began, limit, ctx):
                self.abandoned.add(running)  # left to finish in its thread
                running.add_done_callback(self.abandoned.discard)
                running.add_done_callback(_discard_result)
                return self._failure(lease, HandlerTimeoutError(limit))
            outcome, finished = await running
        except asyncio.CancelledError:
            if _cancelling():
                raise  # our own task's cancellation (worker stop); the thread runs on
            return self._failure(lease, asyncio.CancelledError())
        finally:
            self._running.remove(lease.lease_id)
            self._took(lease, started)
        if finished is None:  # not recorded in the handler's transaction
            if ctx.lent_sync_conn is not None and outcome.status == CommandStatus.COMPLETED:
                self._warn_committed_on_its_own(lease, "ctx.sync_conn")
            return outcome
        recorded = self._completer.held([outcome], finished)
        if recorded:
            await self._completer.recorded(recorded)
        return None

    def _in_thread(
        self, handler: Any, lease: Lease, ctx: HandlerContext, began: asyncio.Future[None]
    ) -> tuple[Outcome, set[Any] | None]:
        """In the handler's thread: call it, and if it wrote on ``ctx.sync_conn``, record a
        success in that transaction and commit. Returns the outcome, with the command ids
        ``finish.sql`` updated if it was recorded here (None if left to the completer)."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            began.get_loop().call_soon_threadsafe(_resolve, began)
        try:
            try:
                outcome = outcome_for_result(lease, handler(lease.command, ctx))
            except (Exception, SystemExit, KeyboardInterrupt, asyncio.CancelledError) as exc:
                # Raised in the handler's thread (sys.exit() from argparse, a cancelled
                # asyncio.run() inside it), they end that call, not the worker.
                outcome = self._failure(lease, exc)
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
                    finished = self._completer.finish_sync(conn, outcome)
                    if finished:
                        conn.commit()
                    else:  # lease lost: another attempt owns the command and its writes
                        conn.rollback()
                    return outcome, finished
                except Exception as exc:
                    outcome = self._failure(lease, exc)
            elif outcome.status == CommandStatus.COMPLETED:  # its writes cannot commit
                outcome = self._failure(
                    lease, RuntimeError("the handler's transaction on ctx.sync_conn failed")
                )
            return outcome, None
        finally:
            if ctx.lent_sync_conn is not None:
                self._sync_conns.give_back(ctx.lent_sync_conn)  # rolls back what is open

    async def close(self, *, worker: str) -> None:
        """Shut the threads down (not waiting for abandoned ones), then the connections."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.abandoned:  # hung past their timeout: they may never return
            log.warning(
                "worker %s: %d plain-def handler(s) still running past their timeout; "
                "not waiting for them (the process cannot exit before they return)",
                worker,
                len(self.abandoned),
            )
        else:
            await _join_executor(self._executor)
        if self._sync_conns.opened:  # no handler thread is left
            await asyncio.to_thread(self._sync_conns.close)


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
