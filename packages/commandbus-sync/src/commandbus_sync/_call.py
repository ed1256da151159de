"""One call crossing from a caller thread to the runtime's loop, and its result coming back.

Why not ``BlockingPortal.call`` or ``asyncio.run_coroutine_threadsafe``: both add a
``concurrent.futures.Future`` with a condition variable and extra loop round trips. Here a
call is queued for the loop (one wake-up serves every call queued meanwhile, see
``SyncRuntime._submit``) and one lock release (or event) wakes the caller;
``bench/bench_sync.py`` prints the three side by side.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from contextvars import Context
from typing import Any, Generic, TypeVar

from commandbus_sync._errors import AsyncContextError


def asyncio_loop_running() -> bool:
    """Whether this thread runs an asyncio event loop (public API only: the exception
    of ``get_running_loop`` is the documented way to ask)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


T = TypeVar("T")

__all__ = ["Call", "TaskHandle"]


class Call:
    """A coroutine function to run on the loop; ``wake`` is called once when it has finished.

    Every method but the constructor runs on the loop thread, so no lock is needed here.
    The outcome is a value or any exception (``BaseException`` included): it is handed to
    the caller instead of escaping into the loop, which a ``KeyboardInterrupt`` would kill.
    """

    __slots__ = ("args", "finished", "fn", "kwargs", "ok", "outcome", "registry", "task", "wake")

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wake: Callable[[], object],
        registry: set[Call],
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.wake = wake
        self.registry = registry
        self.task: asyncio.Task[None] | None = None
        self.ok = False
        self.finished = False
        self.outcome: Any = None

    def start(self, loop: asyncio.AbstractEventLoop, name: str | None, context: Context) -> None:
        """Runs in a copy of the *caller's* context, so its context variables are seen."""
        if self.finished:  # cancelled before the loop got to it
            return
        self.registry.add(self)
        self.task = loop.create_task(self._drive(), name=name, context=context)

    async def _drive(self) -> None:
        try:
            self.outcome = await self.fn(*self.args, **self.kwargs)
            self.ok = True
        except BaseException as exc:  # handed to the caller, never to the loop
            self.outcome = exc
        finally:
            self.finish()

    def fail(self, exc: BaseException) -> None:
        self.outcome = exc
        self.finish()

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.registry.discard(self)
            self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
            self.wake()

    def cancel(self) -> None:
        """Cancel the task; a task cancelled before its first step never runs ``_drive``'s
        ``finally``, so a done callback finishes the call in that case."""
        if self.finished:
            return
        if self.task is None:
            self.fail(asyncio.CancelledError())
            return
        self.task.cancel()
        self.task.add_done_callback(self._finish_cancelled)

    def _finish_cancelled(self, _task: asyncio.Task[None]) -> None:
        if not self.finished:
            self.fail(asyncio.CancelledError())


class TaskHandle(Generic[T]):
    """A background task started by :meth:`SyncRuntime.start_task`, usable from any thread."""

    def __init__(self, call: Call, done: threading.Event, cancel: Callable[[Call], None]) -> None:
        self._call = call
        self._done = done
        self._cancel = cancel

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task has finished (True) or ``timeout`` seconds passed (False)."""
        return self._done.wait(timeout)

    def cancelled(self) -> bool:
        return self.done() and isinstance(self._call.outcome, asyncio.CancelledError)

    def cancel(self) -> bool:
        """Ask the task to stop; returns False if it had finished already. Does not wait:
        call :meth:`result` to wait for it."""
        if self.done():
            return False
        self._cancel(self._call)
        return True

    def result(self, timeout: float | None = None) -> T:
        """The task's return value, or its exception unchanged.

        Raises ``TimeoutError`` when not finished within ``timeout`` seconds and
        ``concurrent.futures.CancelledError`` when it was cancelled.
        """
        if not self._done.is_set() and asyncio_loop_running():
            raise AsyncContextError(
                "TaskHandle.result() would block a running event loop; in async code, "
                "await the task's async function directly instead of starting it on a SyncRuntime"
            )
        if not self._done.wait(timeout):
            raise TimeoutError(f"the task did not finish within {timeout} s")
        call = self._call
        if call.ok:
            return call.outcome  # type: ignore[no-any-return]
        if isinstance(call.outcome, asyncio.CancelledError):
            raise concurrent.futures.CancelledError("the task was cancelled")
        raise call.outcome
