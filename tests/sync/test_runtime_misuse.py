"""Blocking calls where an event loop runs raise a clear error naming the async API — never
a deadlock; pools bound to another loop are refused."""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from commandbus import CommandBus, CommandBusError, ValidationError
from commandbus_sync import AsyncContextError, SyncRuntime


async def add(a: int, b: int) -> int:
    return a + b


async def test_run_from_async_code_raises_and_names_the_async_api(runtime: SyncRuntime) -> None:
    with pytest.raises(AsyncContextError) as caught:
        runtime.run(add, 1, 2)
    assert isinstance(caught.value, CommandBusError)
    assert isinstance(caught.value, RuntimeError)
    assert "thread that is running an event loop" in str(caught.value)
    assert "await add(...)" in str(caught.value)


async def test_facade_call_from_async_code_names_the_async_method(
    runtime: SyncRuntime, bus: CommandBus
) -> None:
    with pytest.raises(AsyncContextError, match=r"await CommandBus\.send_batch"):
        runtime.run(bus.send_batch, [])


def test_run_from_the_runtimes_own_loop_raises_instead_of_deadlocking(
    runtime: SyncRuntime,
) -> None:
    async def reenter() -> int:
        return runtime.run(add, 1, 2)

    with pytest.raises(AsyncContextError, match="own loop thread"):
        runtime.run(reenter)
    assert runtime.run(add, 1, 2) == 3


def test_shutdown_from_the_runtimes_own_loop_raises(runtime: SyncRuntime) -> None:
    async def stop_from_inside() -> None:
        runtime.shutdown()

    with pytest.raises(AsyncContextError, match="own loop thread"):
        runtime.run(stop_from_inside)
    assert not runtime.closed


def test_waiting_on_a_task_handle_from_the_loop_raises(runtime: SyncRuntime) -> None:
    import asyncio

    handle = runtime.start_task(asyncio.sleep, 30)

    async def wait_inside() -> None:
        handle.result()

    with pytest.raises(AsyncContextError, match=r"TaskHandle\.result"):
        runtime.run(wait_inside)
    handle.cancel()


async def test_a_pool_opened_on_another_loop_is_refused(
    runtime: SyncRuntime, pool: AsyncConnectionPool
) -> None:
    with pytest.raises(ValidationError, match="opened on another event loop") as caught:
        runtime.check_pool(pool)
    assert caught.value.field == "pool"


def test_an_unopened_pool_is_refused(runtime: SyncRuntime, database_url: str) -> None:
    pool = AsyncConnectionPool(database_url, open=False)
    with pytest.raises(ValidationError, match="not open"):
        runtime.check_pool(pool)


def test_a_sync_pool_is_refused(runtime: SyncRuntime, database_url: str) -> None:
    pool = ConnectionPool(database_url, open=False)
    with pytest.raises(ValidationError, match="AsyncConnectionPool"):
        runtime.check_pool(pool)


def test_a_pool_opened_on_the_runtime_loop_is_accepted(
    runtime: SyncRuntime, database_url: str
) -> None:
    async def open_here() -> AsyncConnectionPool:
        p = AsyncConnectionPool(database_url, min_size=1, open=False)
        await p.open()
        return p

    pool = runtime.run(open_here)
    try:
        assert runtime.check_pool(pool) is pool
    finally:
        runtime.run(pool.close)
    assert runtime.check_pool(runtime.open_pool(database_url, min_size=1)) is not None
