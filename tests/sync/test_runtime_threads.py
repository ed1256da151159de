"""Many threads share one runtime; an interrupted caller cancels its coroutine."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import anyio

from commandbus_sync import SyncRuntime


async def echo(thread: int, i: int) -> tuple[int, int]:
    await anyio.lowlevel.checkpoint()
    return thread, i


def test_sixteen_threads_times_two_hundred_calls(runtime: SyncRuntime) -> None:
    errors: list[BaseException] = []
    go = threading.Event()

    def caller(n: int) -> None:
        go.wait()
        try:
            for i in range(200):
                assert runtime.run(echo, n, i) == (n, i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_ctrl_c_while_waiting_cancels_the_coroutine_and_propagates() -> None:
    code = """
        import asyncio, signal, threading
        from commandbus_sync import SyncRuntime
        started, cleaned_up = threading.Event(), threading.Event()
        async def forever():
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                cleaned_up.set()
        def interrupt_main():
            started.wait(10)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        with SyncRuntime() as rt:
            threading.Thread(target=interrupt_main).start()
            try:
                rt.run(forever)
            except KeyboardInterrupt:
                print("KeyboardInterrupt", flush=True)
            assert cleaned_up.wait(10), "coroutine not cancelled"
            async def ok():
                return "still usable"
            print(rt.run(ok))
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["KeyboardInterrupt", "still usable"]
