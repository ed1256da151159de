"""SyncRuntime.run / run_many / start_task: results, exceptions unchanged, context variables."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import traceback

import anyio
import pytest

from commandbus_sync import SyncRuntime

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def add(a: int, b: int) -> int:
    await anyio.lowlevel.checkpoint()
    return a + b


def test_run_returns_the_coroutine_result_computed_on_the_loop_thread(
    runtime: SyncRuntime,
) -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert runtime.run(add, 1, 2) == 3
    assert runtime.run(where).startswith("commandbus-sync-runtime-")


def test_run_passes_keyword_arguments(runtime: SyncRuntime) -> None:
    async def kw(a: int, *, b: int) -> tuple[int, int]:
        return a, b

    assert runtime.run(kw, 1, b=2) == (1, 2)


def test_exception_is_the_same_object_with_its_attributes_and_traceback(
    runtime: SyncRuntime,
) -> None:
    class Custom(Exception):
        def __init__(self, code: str) -> None:
            super().__init__(code)
            self.code = code

    error = Custom("E42")

    async def fail_deep() -> None:
        await anyio.lowlevel.checkpoint()
        raise error

    with pytest.raises(Custom) as caught:
        runtime.run(fail_deep)
    assert caught.value is error
    assert caught.value.code == "E42"
    assert caught.value.__context__ is None
    frames = [f.name for f in traceback.extract_tb(caught.value.__traceback__)]
    assert "fail_deep" in frames


def test_keyboard_interrupt_from_the_coroutine_propagates_and_the_runtime_survives(
    runtime: SyncRuntime,
) -> None:
    interrupt = KeyboardInterrupt()

    async def interrupted() -> None:
        raise interrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        runtime.run(interrupted)
    assert caught.value is interrupt
    assert runtime.run(add, 2, 2) == 4


def test_system_exit_from_the_coroutine_propagates(runtime: SyncRuntime) -> None:
    async def leave() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit) as caught:
        runtime.run(leave)
    assert caught.value.code == 3
    assert runtime.run(add, 1, 1) == 2


def test_a_coroutine_cancelled_on_the_loop_raises_cancelled_error(runtime: SyncRuntime) -> None:
    async def cancel_myself() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    with pytest.raises(concurrent.futures.CancelledError):
        runtime.run(cancel_myself)
    assert runtime.run(add, 1, 1) == 2


def test_context_variables_of_the_caller_are_seen_and_changes_do_not_leak_back(
    runtime: SyncRuntime,
) -> None:
    async def read_then_write() -> str:
        await anyio.lowlevel.checkpoint()
        seen = var.get()
        var.set("changed on the loop")
        return seen

    token = var.set("from caller")
    try:
        assert runtime.run(read_then_write) == "from caller"
        assert var.get() == "from caller"
    finally:
        var.reset(token)


def test_context_variables_are_per_calling_thread(runtime: SyncRuntime) -> None:
    async def read() -> str:
        return var.get()

    seen: dict[str, str] = {}

    def caller(name: str) -> None:
        var.set(name)
        seen[name] = runtime.run(read)

    threads = [threading.Thread(target=caller, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {f"t{i}": f"t{i}" for i in range(4)}


def test_run_many_returns_results_in_order_concurrently(runtime: SyncRuntime) -> None:
    # The first call waits for an event the last one sets: only concurrent runs finish.
    async def waiter(event_box: list[asyncio.Event]) -> str:
        await event_box[0].wait()
        return "waited"

    async def setter(event_box: list[asyncio.Event]) -> str:
        event_box[0].set()
        return "set"

    async def make_event() -> list[asyncio.Event]:
        return [asyncio.Event()]

    box = runtime.run(make_event)
    assert runtime.run_many([(waiter, box), (add, 1, 2), (setter, box)]) == ["waited", 3, "set"]
    assert runtime.run_many([]) == []


def test_run_many_raises_the_first_exception_unchanged_and_cancels_the_others(
    runtime: SyncRuntime,
) -> None:
    error = LookupError("first")
    cancelled = threading.Event()

    async def fail() -> None:
        raise error

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with pytest.raises(LookupError) as caught:
        runtime.run_many([(forever,), (fail,)])
    assert caught.value is error
    assert cancelled.is_set()


def test_run_many_rejects_malformed_calls_before_running_anything(runtime: SyncRuntime) -> None:
    with pytest.raises(TypeError, match=r"calls\[1\] must be a tuple"):
        runtime.run_many([(add, 1, 2), add])  # type: ignore[list-item]


def test_start_task_runs_in_the_background_and_returns_its_result(runtime: SyncRuntime) -> None:
    release = threading.Event()

    async def wait_for_release() -> str:
        await anyio.to_thread.run_sync(release.wait)
        return "done"

    handle = runtime.start_task(wait_for_release, name="bg")
    assert not handle.done()
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.01)
    release.set()
    assert handle.result(timeout=10) == "done"
    assert handle.done()
    assert not handle.cancel()


def test_start_task_can_be_cancelled_from_another_thread(runtime: SyncRuntime) -> None:
    started = threading.Event()
    cleaned_up = threading.Event()

    async def loop_forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.set()

    handle = runtime.start_task(loop_forever)
    assert started.wait(10)
    canceller = threading.Thread(target=handle.cancel)
    canceller.start()
    canceller.join()
    with pytest.raises(concurrent.futures.CancelledError):
        handle.result(timeout=10)
    assert handle.cancelled()
    assert cleaned_up.is_set()


def test_start_task_exception_is_raised_by_result(runtime: SyncRuntime) -> None:
    error = RuntimeError("background failure")

    async def fail() -> None:
        raise error

    handle = runtime.start_task(fail)
    with pytest.raises(RuntimeError) as caught:
        handle.result(timeout=10)
    assert caught.value is error
