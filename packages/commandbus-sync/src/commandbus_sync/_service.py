"""Running a long-lived async service (``Worker``, ``ProcessReplyRouter``) from blocking code.

The service's ``run()`` is a background task on the runtime's loop; the caller either
returns once the service is listening (``block=False``) or waits for it to end
(``block=True``), turning Ctrl-C and SIGTERM into a graceful ``stop()``. Shared by
:class:`~commandbus_sync.SyncWorker` and :class:`~commandbus_sync.SyncProcessReplyRouter`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

from commandbus import InvalidOperationError
from commandbus._validation import check_concurrency, check_stop_timeout
from commandbus.worker import current_worker
from commandbus_sync._call import TaskHandle
from commandbus_sync._errors import AsyncContextError
from commandbus_sync._facade import Facade
from commandbus_sync.runtime import SyncRuntime, event_loop_running

__all__ = ["Service", "ServiceFacade", "ServiceRunner"]

log = logging.getLogger("commandbus_sync")

#: How long a blocking waiter sleeps between checks that its runtime is alive.
_WAIT_SLICE_S = 0.5
#: After a second Ctrl-C or SIGTERM, how long to let the cancelled service unwind (return
#: its connections); plain-def handlers stuck in their threads are not waited for longer.
_CANCEL_WAIT_S = 3.0
#: While starting, how often the caller checks whether start-up failed.
_START_POLL_S = 0.02


class Service(Protocol):
    """What the core's Worker and ProcessReplyRouter have in common."""

    ready: asyncio.Event

    @property
    def running(self) -> bool: ...

    async def run(self) -> None: ...

    async def stop(self, timeout: float | None = 30) -> None: ...


class _Terminate(BaseException):
    """Raised in the main thread by our SIGTERM handler, to stop like Ctrl-C does."""


class ServiceRunner:
    """Starts, waits for and stops one service on a runtime; one run at a time."""

    def __init__(self, runtime: SyncRuntime, service: Service, name: str) -> None:
        self.runtime = runtime
        self.service = service
        self.name = name
        self._lock = threading.Lock()
        self._handle: TaskHandle[None] | None = None

    @property
    def running(self) -> bool:
        handle = self._handle
        return handle is not None and not handle.done()

    def run(
        self, *, block: bool, configure: Callable[[], None], signal_stop_timeout: float | None
    ) -> None:
        """Start the service (``configure`` is applied on the loop first, before it runs);
        return once it listens, or, with ``block``, once it has stopped (Ctrl-C and SIGTERM
        stop it with ``signal_stop_timeout``)."""
        self._check_caller("run")
        started = threading.Event()
        with self._lock:
            if self.running:
                raise InvalidOperationError(f"this {self.name} is running already")
            handle = self._handle = self.runtime.start_task(
                self._serve, configure, started, name=self.name
            )
        try:
            while not started.wait(_START_POLL_S) and not handle.done():
                pass
        except BaseException:  # Ctrl-C while starting: leave nothing running
            handle.cancel()
            handle.wait(_CANCEL_WAIT_S)
            self._forget(handle)
            raise
        if not started.is_set():
            self._forget(handle)  # nothing left to stop; the error is the caller's now
            handle.result()  # a start-up error (pool too small, ...) is raised here
            return
        if block:
            self._wait(handle, signal_stop_timeout)

    def stop(self, timeout: float | None = 30) -> None:
        """Stop gracefully (in-flight work gets ``timeout`` seconds) and join the task.
        Raises the service's own failure, if it ended with one.

        Called from one of the service's own handlers (a plain-``def`` handler's thread),
        it only asks the service to stop: waiting for that handler would never end."""
        self._check_caller("stop")
        timeout = check_stop_timeout(timeout)
        handle = self._handle
        if handle is None:
            return
        if not handle.done():
            self.runtime.run(self.service.stop, timeout)
            if current_worker() is self.service:
                return
            handle.wait()
        self._forget(handle)  # a failure is raised once, here
        handle.result()

    def _forget(self, handle: TaskHandle[None]) -> None:
        with self._lock:
            if self._handle is handle:  # not a newer run started meanwhile
                self._handle = None

    def _check_caller(self, method: str) -> None:
        if event_loop_running():
            raise AsyncContextError(
                f"{self.name}.{method}() was called from a thread that runs an event loop, "
                f"where blocking would stall or deadlock it. In async code use the async "
                f"API: `await {type(self.service).__name__}.{method}()`"
            )

    async def _serve(self, configure: Callable[[], None], started: threading.Event) -> None:
        if self.service.running:
            raise InvalidOperationError(f"this {self.name} is running already")
        configure()
        ready = asyncio.ensure_future(self.service.ready.wait())
        ready.add_done_callback(lambda task: None if task.cancelled() else started.set())
        try:
            await self.service.run()
        except Exception:
            if started.is_set():  # after start-up nobody waits for it: say so now
                log.exception("%s stopped with an error", self.name)
            raise
        finally:
            ready.cancel()

    def _wait(self, handle: TaskHandle[None], stop_timeout: float | None) -> None:
        """Wait for the task to end; Ctrl-C or SIGTERM stops it gracefully. A second one
        during that stop cancels in-flight work (delivered again after its lease) and
        ends the run: KeyboardInterrupt, or SystemExit(143) for SIGTERM."""
        with _sigterm_raises():
            try:
                while not handle.wait(_WAIT_SLICE_S):
                    pass
            except (KeyboardInterrupt, _Terminate):
                try:  # a second signal may land anywhere from here on
                    log.info(
                        "%s: stopping gracefully (in-flight work gets %s s); "
                        "a second Ctrl-C or SIGTERM cancels it",
                        self.name,
                        stop_timeout,
                    )
                    self.stop(stop_timeout)
                except (KeyboardInterrupt, _Terminate) as again:
                    handle.cancel()
                    handle.wait(_CANCEL_WAIT_S)
                    self._forget(handle)
                    if isinstance(again, _Terminate):
                        raise SystemExit(128 + signal.SIGTERM) from None
                    raise
                return
        handle.result()


class ServiceFacade(Facade):
    """Base of SyncWorker and SyncProcessReplyRouter: run/stop/close of the async service
    ``self._target`` on ``self.runtime``."""

    _target: Service
    #: Seconds in-flight work gets when Ctrl-C or SIGTERM stops a blocking ``run()``.
    signal_stop_timeout: float | None = 30

    def _init_runner(self, name: str) -> None:
        self._runner = ServiceRunner(self.runtime, self._target, name)

    @property
    def running(self) -> bool:
        return self._runner.running

    def _start(self, *, block: bool, **overrides: int | None) -> None:
        """Run the service; ``overrides`` (concurrency, thread_pool_size; None = keep) are
        set on it on the loop, once it is known not to be running."""
        given = {k: check_concurrency(k, v) for k, v in overrides.items() if v is not None}
        service = self._target

        def configure() -> None:
            for name, value in given.items():
                setattr(service, name, value)

        self._runner.run(
            block=block, configure=configure, signal_stop_timeout=self.signal_stop_timeout
        )

    def stop(self, timeout: float | None = 30) -> None:
        """Stop taking work; in-flight work gets ``timeout`` seconds (the rest is delivered
        again after its lease). Returns once nothing of the service is left running, its
        handler threads included; called from one of its own handlers, it only asks."""
        self._runner.stop(timeout)

    def close(self) -> None:
        """Stop the service if it runs, then close the pool opened from ``conninfo``."""
        try:
            if not self.runtime.closed:
                self.stop()
        finally:
            super().close()


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """In the main thread, make SIGTERM interrupt the wait like Ctrl-C does; an
    application's own SIGTERM handler is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise _Terminate

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
