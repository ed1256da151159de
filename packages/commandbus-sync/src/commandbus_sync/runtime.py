"""SyncRuntime: one asyncio loop in a background thread that blocking code calls into.

Why one long-lived loop rather than ``asyncio.run`` per call: pools, workers and their
tasks belong to the loop they were created on, so they must all live on one loop for the
life of the runtime. Every public blocking call crosses the thread boundary exactly once.

The loop is started by anyio's :func:`~anyio.from_thread.start_blocking_portal`; calls
cross through :class:`~commandbus_sync._call.Call` (cheaper than ``BlockingPortal.call``,
same semantics). A process-wide default runtime is created on first use, shut down at
exit with a bounded wait, and recreated in a forked child.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractContextManager, suppress
from contextvars import Context, copy_context
from time import monotonic
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from psycopg_pool import AsyncConnectionPool

from commandbus import ValidationError
from commandbus_sync._call import Call, TaskHandle, asyncio_loop_running
from commandbus_sync._errors import AsyncContextError, RuntimeClosedError

__all__ = ["SyncRuntime", "TaskHandle", "event_loop_running", "get_default_runtime"]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("commandbus_sync")

#: While a caller waits, it checks this often that the loop thread is still alive.
_LIVENESS_POLL_S = 0.5
#: Total time the atexit hook may spend shutting runtimes down.
_EXIT_BUDGET_S = 5.0

_names = itertools.count(1)


class SyncRuntime:
    """An event loop in a daemon thread, for calling async commandbus APIs from blocking code.

    Thread-safe: any number of threads may call :meth:`run` at once. ``with SyncRuntime()
    as rt:`` shuts it down on exit. Calling it from a thread that runs an event loop raises
    :class:`AsyncContextError` instead of deadlocking.
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._abandoned = False
        self._stopped = threading.Event()
        self._calls: set[Call] = set()  # touched on the loop thread only
        self._inbox: deque[tuple[Call, str | None, Context]] = deque()  # guarded by _lock
        self._wake_pending = False  # guarded by _lock: a _drain is scheduled on the loop
        self._pools: list[AsyncConnectionPool] = []  # appended on the loop thread only
        self._close_task: asyncio.Task[None] | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal(
            backend="asyncio"
        )
        self._portal = self._portal_cm.__enter__()
        self._loop, self._thread = self._portal.call(_claim_loop_thread)
        _live.add(self)

    # -- calls ---------------------------------------------------------------------------

    def run(self, async_fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``async_fn(*args, **kwargs)`` on the loop and block until it finishes.

        Returns its result or raises its exception unchanged (the same object). If the
        waiting thread is interrupted (Ctrl-C), the coroutine is cancelled and the
        interruption propagates.
        """
        if event_loop_running():
            raise self._misuse(async_fn)
        lock = threading.Lock()
        lock.acquire()
        call = Call(async_fn, args, kwargs, lock.release, self._calls)
        try:  # an interruption (Ctrl-C) may land anywhere here, the submission included
            self._submit(call)
            while not lock.acquire(timeout=_LIVENESS_POLL_S):
                self._check_alive()
        except RuntimeClosedError:
            raise  # nothing is running on the loop for this call
        except BaseException:
            self._cancel_soon(call)
            raise
        return self._outcome(call)  # type: ignore[no-any-return]

    def run_many(self, calls: Iterable[tuple[Any, ...]]) -> list[Any]:
        """Run several ``(async_fn, *args)`` tuples concurrently; results in order.

        The first exception propagates (unchanged) after the other calls are cancelled.
        One thread crossing for the whole batch.
        """
        batch = [_check_call_tuple(index, item) for index, item in enumerate(calls)]
        return self.run(_gather, batch)

    def start_task(
        self, async_fn: Callable[..., Awaitable[T]], *args: Any, name: str | None = None
    ) -> TaskHandle[T]:
        """Start long-running background work (a worker loop); returns at once.

        The task is cancelled at :meth:`shutdown` if it is still running.
        """
        done = threading.Event()
        call = Call(async_fn, args, {}, done.set, self._calls)
        self._submit(call, name=name)
        return TaskHandle(call, done, self._cancel_soon)

    def open_pool(
        self, conninfo: str = "", *, wait: bool = True, **pool_kwargs: Any
    ) -> AsyncConnectionPool:
        """Create and open a psycopg ``AsyncConnectionPool`` on this runtime's loop.

        ``pool_kwargs`` go to the pool's constructor; ``wait`` to ``pool.open()``. The
        runtime closes the pool at :meth:`shutdown`.
        """
        if "open" in pool_kwargs:
            raise ValidationError("open", "open_pool opens the pool on the runtime's loop itself")
        return self.run(self._open_pool, conninfo, wait, pool_kwargs)

    def check_pool(self, pool: object) -> AsyncConnectionPool:
        """Return ``pool`` if its tasks run on this runtime's loop, else raise ValidationError.

        A psycopg async pool opened on a loop keeps a scheduler task, worker tasks and
        asyncio locks of that loop; used from another loop it hangs or fails. Accepted:
        pools from :meth:`open_pool`, and open pools whose scheduler task
        (``pool._sched_runner``, psycopg_pool 3.2/3.3) belongs to this loop. Anything we
        cannot verify is rejected.
        """
        if not isinstance(pool, AsyncConnectionPool):
            raise ValidationError(
                "pool",
                f"must be a psycopg_pool.AsyncConnectionPool opened on this runtime, "
                f"got {type(pool).__name__}; use runtime.open_pool(conninfo)",
            )
        if pool in self._pools:
            return pool
        if pool.closed:
            raise ValidationError(
                "pool", "is not open; open it on this runtime with runtime.open_pool(conninfo)"
            )
        runner = getattr(pool, "_sched_runner", None)
        if isinstance(runner, asyncio.Task) and runner.get_loop() is self._loop:
            return pool
        if runner is None:
            raise ValidationError(
                "pool",
                "cannot be verified to run on this runtime's loop (this psycopg_pool version "
                "does not expose its scheduler task). Open it with runtime.open_pool(conninfo), "
                "or pass conninfo= to the sync facade",
            )
        raise ValidationError(
            "pool",
            "was opened on another event loop, and a psycopg async pool can only be used on "
            "the loop it was opened on. Open it on this runtime: runtime.open_pool(conninfo), "
            "or pass conninfo= to the sync facade",
        )

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel remaining calls and tasks, close the pools opened here, join the thread.

        Idempotent and bounded by ``timeout`` seconds: a loop blocked by synchronous code is
        abandoned (it is a daemon thread) with a warning rather than hanging the caller.
        """
        if self._pid != os.getpid():
            self._closed = True  # the loop thread lives in the parent; nothing to do here
            return
        if threading.current_thread() is self._thread:
            raise AsyncContextError(
                "SyncRuntime.shutdown() was called on the runtime's own loop thread, where it "
                "would wait for itself; call it from another thread"
            )
        deadline = monotonic() + timeout
        with self._lock:
            first = not self._closed
            self._closed = True
            if first:
                with suppress(RuntimeError):  # RuntimeError: the loop is gone already
                    self._loop.call_soon_threadsafe(self._begin_close, timeout)
        if not first:
            self._stopped.wait(timeout)
            return
        try:
            self._thread.join(max(0.0, deadline - monotonic()))
            if self._thread.is_alive():
                self._abandon(timeout)
            else:
                self._portal_cm.__exit__(None, None, None)  # its own join returns at once now
        finally:
            _live.discard(self)
            self._stopped.set()

    def __enter__(self) -> SyncRuntime:
        if self._closed:
            raise RuntimeClosedError("this SyncRuntime has been shut down; create a new one")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"<SyncRuntime {state} thread={self._thread.name!r} pid={self._pid}>"

    # -- internals -----------------------------------------------------------------------

    def _submit(self, call: Call, name: str | None = None) -> None:
        if self._pid != os.getpid():
            raise RuntimeClosedError(
                f"this SyncRuntime was created in process {self._pid} and this is process "
                f"{os.getpid()} (a fork): its loop thread does not exist here. Create runtimes, "
                "pools and sync facades after the fork (e.g. in gunicorn's post_fork hook), "
                "or use the default runtime, which is recreated in each child"
            )
        with self._lock:
            if self._closed:
                raise RuntimeClosedError("this SyncRuntime has been shut down; create a new one")
            self._inbox.append((call, name, copy_context()))  # the caller's context vars
            if self._wake_pending:
                return  # a drain is scheduled already: one loop wake-up serves many callers
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError as exc:
                self._inbox.pop()
                raise RuntimeClosedError("this SyncRuntime's event loop has stopped") from exc
            self._wake_pending = True

    def _drain(self) -> None:
        """On the loop: start every call submitted since the last drain."""
        with self._lock:
            self._wake_pending = False
            batch = list(self._inbox)
            self._inbox.clear()
        for call, name, context in batch:
            call.start(self._loop, name, context)

    def _cancel_soon(self, call: Call) -> None:
        with suppress(RuntimeError):  # RuntimeError: loop closed, nothing left to cancel
            self._loop.call_soon_threadsafe(call.cancel)

    def _check_alive(self) -> None:
        if self._abandoned or not self._thread.is_alive():
            raise RuntimeClosedError("this SyncRuntime's event loop thread has stopped")

    def _outcome(self, call: Call) -> Any:
        if call.ok:
            return call.outcome
        exc: BaseException = call.outcome
        call.outcome = None  # no reference cycle through the traceback
        if isinstance(exc, asyncio.CancelledError):
            if self._closed:
                raise RuntimeClosedError(
                    "this SyncRuntime was shut down while the call was running"
                ) from exc
            raise concurrent.futures.CancelledError("the call was cancelled on the loop")
        raise exc

    def _misuse(self, fn: object) -> AsyncContextError:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        if threading.current_thread() is self._thread:
            where = "on the runtime's own loop thread (from a coroutine it is running)"
        else:
            where = "from a thread that is running an event loop"
        return AsyncContextError(
            f"SyncRuntime.run({name}) was called {where}; blocking there would stall or "
            f"deadlock the loop. In async code use the async API: `await {name}(...)`"
        )

    async def _open_pool(
        self, conninfo: str, wait: bool, pool_kwargs: dict[str, Any]
    ) -> AsyncConnectionPool:
        pool: AsyncConnectionPool = AsyncConnectionPool(conninfo, open=False, **pool_kwargs)
        self._pools.append(pool)
        try:
            await pool.open(wait=wait)
        except BaseException:
            self._pools.remove(pool)
            await pool.close()
            raise
        return pool

    def _begin_close(self, timeout: float) -> None:
        self._drain()  # every admitted call is started, hence cancelled by _aclose
        self._close_task = self._loop.create_task(self._aclose(budget=timeout))

    async def _aclose(self, *, budget: float) -> None:
        """On the loop: cancel calls and tasks, close our pools, stop the portal."""
        try:
            with anyio.move_on_after(budget):
                pending = list(self._calls)
                for call in pending:
                    call.cancel()
                tasks = [call.task for call in pending if call.task is not None]
                if tasks:
                    await asyncio.wait(tasks)
                for pool in self._pools:
                    try:
                        await pool.close(timeout=budget)
                    except Exception:
                        logger.exception("closing %r at SyncRuntime shutdown failed", pool)
        finally:
            self._pools.clear()
            await self._portal.stop(cancel_remaining=True)

    def _abandon(self, timeout: float) -> None:
        """The loop did not stop in time (synchronous code blocking it): leave the daemon
        thread behind. The portal's context manager, whose exit joins without a bound, is
        exited on a daemon thread so nothing ever waits on it, not even interpreter exit."""
        self._abandoned = True
        logger.warning(
            "SyncRuntime loop thread %r did not stop within %.1f s (is synchronous code "
            "blocking the event loop?); abandoning it",
            self._thread.name,
            timeout,
        )
        try:
            threading.Thread(
                target=self._portal_cm.__exit__,
                args=(None, None, None),
                name=f"{self._thread.name}-reaper",
                daemon=True,
            ).start()
        except RuntimeError:  # no new threads during interpreter shutdown
            _abandoned.append(self._portal_cm)


def _claim_loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    thread = threading.current_thread()
    thread.name = f"commandbus-sync-runtime-{next(_names)}"
    return asyncio.get_running_loop(), thread


def event_loop_running() -> bool:
    """True if this thread runs an asyncio loop (or a trio run, if trio is loaded)."""
    if asyncio_loop_running():
        return True
    trio = sys.modules.get("trio")
    in_trio_run = getattr(getattr(trio, "lowlevel", None), "in_trio_run", None)
    return bool(in_trio_run and in_trio_run())


def _check_call_tuple(index: int, item: object) -> tuple[Any, ...]:
    if not (isinstance(item, tuple) and item and callable(item[0])):
        raise TypeError(
            f"calls[{index}] must be a tuple (async_fn, *args), got {item!r}; "
            "use functools.partial for keyword arguments"
        )
    return item


async def _gather(calls: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run the calls in one anyio task group; the first failure cancels the rest and is
    re-raised as is (not wrapped in an ExceptionGroup)."""
    results: list[Any] = [None] * len(calls)
    failures: list[BaseException] = []

    async def one(index: int, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            results[index] = await fn(*args)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:
            if not failures:
                failures.append(exc)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for index, (fn, *args) in enumerate(calls):
            tg.start_soon(one, index, fn, tuple(args))
    if failures:
        raise failures[0]
    return results


# -- the process-wide default runtime ------------------------------------------------------

_default: SyncRuntime | None = None
_default_lock = threading.Lock()
#: Runtimes not shut down yet, held strongly (like threads) so that exit closes their pools.
_live: set[SyncRuntime] = set()
_abandoned: list[object] = []
_exiting = False


def get_default_runtime() -> SyncRuntime:
    """The process-wide runtime used when a facade is given none; created on first use,
    and again if the current one was shut down (facades built on it stay closed)."""
    global _default
    runtime = _default
    if runtime is not None and not runtime.closed:
        return runtime
    with _default_lock:
        if _exiting:
            raise RuntimeClosedError("the interpreter is exiting; the default runtime is closed")
        if _default is None or _default.closed:  # e.g. a configured runtime was shut down
            _default = SyncRuntime()
        return _default


def set_default_runtime(runtime: SyncRuntime) -> None:
    """Make ``runtime`` the default (see :func:`commandbus_sync.configure`)."""
    global _default
    if runtime.closed:
        raise RuntimeClosedError("cannot make a shut-down SyncRuntime the default")
    with _default_lock:
        _default = runtime


def _shutdown_all_at_exit() -> None:
    """atexit: shut down every live runtime within one overall budget; never hangs."""
    global _exiting
    _exiting = True
    deadline = monotonic() + _EXIT_BUDGET_S
    for runtime in list(_live):
        try:
            runtime.shutdown(timeout=max(0.0, deadline - monotonic()))
        except Exception:
            logger.exception("shutting down %r at exit failed", runtime)


def _after_fork_in_child() -> None:
    """The parent's loop threads do not exist in a fork: forget them; the default runtime
    is created afresh on first use in the child."""
    global _default, _default_lock, _live
    _default = None
    _default_lock = threading.Lock()
    _live = set()


atexit.register(_shutdown_all_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
