"""SyncRuntime lifecycle: context manager, idempotent bounded shutdown, closed-runtime errors,
the lazy default runtime and its bounded atexit hook."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import pytest

from commandbus import CommandBusError, ValidationError
from commandbus_sync import RuntimeClosedError, SyncRuntime, configure
from commandbus_sync import runtime as runtime_module


async def noop() -> None:
    return None


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_context_manager_starts_and_joins_the_loop_thread() -> None:
    baseline = threading.active_count()
    with SyncRuntime() as rt:
        assert threading.active_count() == baseline + 1
        rt.run(noop)
    assert rt.closed
    assert threading.active_count() == baseline


def test_context_manager_shuts_down_on_exception() -> None:
    with pytest.raises(ZeroDivisionError), SyncRuntime() as rt:
        1 / 0  # noqa: B018
    assert rt.closed


def test_shutdown_is_idempotent_and_safe_from_many_threads() -> None:
    rt = SyncRuntime()
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            rt.shutdown()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stop) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop()
    threading.Thread(target=stop).start()  # may reuse the dead loop thread's ident
    assert errors == []
    assert rt.closed


@pytest.mark.parametrize(
    "use",
    [
        lambda rt: rt.run(noop),
        lambda rt: rt.run_many([(noop,)]),
        lambda rt: rt.start_task(noop),
        lambda rt: rt.open_pool("postgresql://unused"),
        lambda rt: rt.__enter__(),
    ],
    ids=["run", "run_many", "start_task", "open_pool", "enter"],
)
def test_a_closed_runtime_raises_runtime_closed_error(
    use: Callable[[SyncRuntime], object],
) -> None:
    rt = SyncRuntime()
    rt.shutdown()
    with pytest.raises(RuntimeClosedError, match="shut down") as caught:
        use(rt)
    assert isinstance(caught.value, CommandBusError)


def test_shutdown_cancels_a_call_in_progress_and_its_caller_is_told() -> None:
    rt = SyncRuntime()
    started = threading.Event()
    cleaned_up = threading.Event()
    outcome: list[BaseException] = []

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.set()

    def caller() -> None:
        try:
            rt.run(forever)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(10)
    rt.shutdown()
    thread.join(10)
    assert cleaned_up.is_set()
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeClosedError)
    assert "while the call was running" in str(outcome[0])


def test_shutdown_cancels_background_tasks() -> None:
    rt = SyncRuntime()
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    handle = rt.start_task(forever)
    assert started.wait(10)
    rt.shutdown()
    assert handle.done()
    assert handle.cancelled()


def test_shutdown_is_bounded_when_synchronous_code_blocks_the_loop() -> None:
    rt = SyncRuntime()
    loop_blocked = threading.Event()
    release = threading.Event()

    async def block_the_loop() -> None:
        loop_blocked.set()
        release.wait(30)  # deliberately blocking: the loop cannot run anything else

    rt.start_task(block_the_loop)
    assert loop_blocked.wait(10)
    began = time.monotonic()
    rt.shutdown(timeout=0.3)
    assert time.monotonic() - began < 5
    assert rt.closed
    release.set()  # let the abandoned thread finish so the test leaves nothing behind
    assert wait_until(
        lambda: not any(t.name.startswith(rt._thread.name) for t in threading.enumerate())
    )


def test_open_pool_rejects_open_argument(runtime: SyncRuntime) -> None:
    with pytest.raises(ValidationError, match="open"):
        runtime.open_pool("postgresql://unused", open=True)


def test_pools_opened_by_the_runtime_are_closed_at_shutdown(database_url: str) -> None:
    rt = SyncRuntime()
    pool = rt.open_pool(database_url, min_size=1, max_size=2)
    assert not pool.closed
    rt.shutdown()
    assert pool.closed


def test_default_runtime_is_created_lazily_once() -> None:
    out = python(
        """
        import threading, commandbus_sync
        from commandbus_sync.runtime import get_default_runtime
        assert threading.active_count() == 1, "importing started a thread"
        rt = get_default_runtime()
        assert get_default_runtime() is rt
        assert threading.active_count() == 2
        print("ok")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_atexit_cancels_background_work_and_exits_cleanly() -> None:
    out = python(
        """
        import asyncio, threading
        from commandbus_sync.runtime import get_default_runtime
        started = threading.Event()
        async def forever():
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                print("cleaned up", flush=True)
        get_default_runtime().start_task(forever)
        started.wait(10)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cleaned up"


def test_atexit_never_hangs_when_the_loop_is_blocked() -> None:
    began = time.monotonic()
    out = python(
        """
        import threading, time
        from commandbus_sync.runtime import get_default_runtime
        blocked = threading.Event()
        async def block_the_loop():
            blocked.set()
            time.sleep(120)  # deliberately blocks the loop thread
        get_default_runtime().start_task(block_the_loop)
        blocked.wait(10)
        print("exiting", flush=True)
        """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "exiting" in out.stdout
    assert "did not stop within" in out.stderr  # the warning says why it was abandoned
    assert time.monotonic() - began < 30


def test_the_default_runtime_is_recreated_once_the_configured_one_is_shut_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "_default", None)
    with SyncRuntime() as configured:
        configure(runtime=configured)
        assert runtime_module.get_default_runtime() is configured
    fresh = runtime_module.get_default_runtime()
    try:
        assert fresh is not configured
        assert not fresh.closed
        assert fresh.run(asyncio.sleep, 0, "ok") == "ok"
    finally:
        fresh.shutdown()
