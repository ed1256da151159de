"""Starting and stopping a worker: graceful stop, stop timeout, cancellation, pool checks.

``stop()`` stops taking work, lets in-flight handlers finish (cancelling async ones still
running after ``timeout``, whose commands are redelivered after their lease), and returns
with no task or thread of the worker left behind.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    ConfigurationError,
    HandlerContext,
    HandlerRegistry,
    InvalidOperationError,
    ValidationError,
    Worker,
    migrate,
)
from core.helpers import (
    DOMAIN,
    event_types,
    make_worker,
    queue_messages,
    running,
    start,
    starved_pool,
    wait_for_event,
    wait_for_status,
)


async def test_stop_waits_for_in_flight_handlers_and_takes_no_new_work(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Work")
    async def work(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {"done": True}

    in_flight, later = uuid.uuid4(), uuid.uuid4()
    await bus.send(DOMAIN, "Work", in_flight, {})
    worker = make_worker(pool, schema, registry)
    task = await start(worker)
    await wait_for_event(started, what="the handler to start")

    stopping = asyncio.create_task(worker.stop(timeout=10))
    # stop() is waiting for the handler: it has not returned after a while.
    done, _ = await asyncio.wait({stopping}, timeout=0.3)
    assert not done
    await bus.send(DOMAIN, "Work", later, {})  # a stopping worker takes no new work
    release.set()
    await asyncio.wait_for(stopping, 10)
    await asyncio.wait_for(task, 10)

    meta = await bus.get_command(DOMAIN, in_flight)
    assert meta is not None and meta.status == CommandStatus.COMPLETED
    pending = await bus.get_command(DOMAIN, later)
    assert pending is not None and pending.status == CommandStatus.PENDING
    assert worker.stats["received"] == 1


async def test_stop_timeout_cancels_the_handler_and_the_command_is_redelivered(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    started = asyncio.Event()
    cancelled: list[int] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Work")
    async def hangs(command: Command, ctx: HandlerContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(ctx.attempt)
            raise

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Work", command_id, {})
    worker = make_worker(pool, schema, registry, visibility_timeout=0.5)
    task = await start(worker)
    await wait_for_event(started, what="the handler to start")
    await asyncio.wait_for(worker.stop(timeout=0.1), 5)
    await asyncio.wait_for(task, 5)

    assert cancelled == [1]
    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and meta.status == CommandStatus.IN_PROGRESS
    assert await queue_messages(pool, schema, command_id) == 1  # not lost

    later = HandlerRegistry()

    async def finish(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        return {"attempt": ctx.attempt}

    later.register(DOMAIN, "Work", finish)
    async with running(make_worker(pool, schema, later)):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.result == {"attempt": 2}
    assert await event_types(bus, command_id) == ["SENT", "RECEIVED", "RECEIVED", "COMPLETED"]


async def test_stop_leaves_no_task_or_thread_behind(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    handler_threads: set[str] = set()
    registry = HandlerRegistry()

    def plain(command: Command, ctx: HandlerContext) -> None:
        handler_threads.add(threading.current_thread().name)

    async def coro(command: Command, ctx: HandlerContext) -> None:
        return None

    registry.register(DOMAIN, "Plain", plain)
    registry.register(DOMAIN, "Async", coro)
    ids = [uuid.uuid4() for _ in range(6)]
    await asyncio.sleep(0)  # let the fixtures' own tasks settle before the snapshot
    threads_before = set(threading.enumerate())
    tasks_before = asyncio.all_tasks()

    worker = make_worker(pool, schema, registry, concurrency=4)
    task = await start(worker)
    for k, command_id in enumerate(ids):
        await bus.send(DOMAIN, "Plain" if k % 2 else "Async", command_id, {})
    for command_id in ids:
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert handler_threads  # plain handlers did run on the worker's threads
    await worker.stop(timeout=5)

    assert asyncio.all_tasks() - tasks_before <= {task}
    await asyncio.wait_for(task, 5)
    assert asyncio.all_tasks() == tasks_before
    new_threads = set(threading.enumerate()) - threads_before
    # The event loop's default executor may have grown (DNS lookups, to_thread); the
    # worker's own handler threads must be gone.
    assert [t.name for t in new_threads if not t.name.startswith("asyncio_")] == []
    assert not worker.ready.is_set()


async def test_cancelling_the_run_task_stops_cleanly_and_redelivers_in_flight_work(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    started = asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Work")
    async def work(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            started.set()
            await asyncio.Event().wait()
        return {"attempt": ctx.attempt}

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Work", command_id, {})
    tasks_before = asyncio.all_tasks()
    threads_before = set(threading.enumerate())
    worker = make_worker(pool, schema, registry, visibility_timeout=0.5)
    task = await start(worker)
    await wait_for_event(started, what="the handler to start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)

    assert asyncio.all_tasks() == tasks_before, asyncio.all_tasks() - tasks_before
    new_threads = set(threading.enumerate()) - threads_before
    assert [t.name for t in new_threads if not t.name.startswith("asyncio_")] == []
    # The same worker object can run again; it picks the command up after the lease.
    async with running(worker):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.result == {"attempt": 2}


async def test_cancelling_run_during_start_up_leaves_no_task_behind(
    pool: AsyncConnectionPool, schema: str
) -> None:
    tasks_before = asyncio.all_tasks()
    task = asyncio.create_task(make_worker(pool, schema, HandlerRegistry()).run())
    await asyncio.sleep(0)  # run() is now waiting for its listener to LISTEN
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    leftover = asyncio.all_tasks() - tasks_before
    for stray in leftover:
        stray.cancel()
    assert leftover == set()


async def test_stop_right_after_starting_the_run_task_stops_it(
    pool: AsyncConnectionPool, schema: str
) -> None:
    worker = make_worker(pool, schema, HandlerRegistry())
    task = asyncio.create_task(worker.run())
    await worker.stop(timeout=1)
    await asyncio.wait_for(task, 0.5)  # on timeout, wait_for cancels the task: nothing leaks


async def test_stop_waits_for_a_plain_def_handler_thread_and_redelivers_its_command(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    """A thread cannot be cancelled: stop() returns once it ends, leaving no thread behind."""
    started, release = threading.Event(), threading.Event()
    registry = HandlerRegistry()

    def blocking(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            started.set()
            release.wait(10)
        return {"attempt": ctx.attempt}

    registry.register(DOMAIN, "Block", blocking)
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Block", command_id, {})
    threads_before = set(threading.enumerate())  # other tests' in this process are not ours
    worker = make_worker(pool, schema, registry, visibility_timeout=0.5)
    task = await start(worker)
    try:
        await asyncio.to_thread(started.wait, 10)
        stopping = asyncio.create_task(worker.stop(timeout=0.1))
        done, _ = await asyncio.wait({stopping}, timeout=0.3)
        assert not done  # still waiting for the handler's thread
    finally:
        release.set()
    await asyncio.wait_for(stopping, 5)
    await asyncio.wait_for(task, 5)
    new_threads = set(threading.enumerate()) - threads_before
    assert not [t for t in new_threads if t.name.startswith("commandbus-")]

    # The late result was not recorded (the handler was given up on); it is redelivered.
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.result == {"attempt": 2}


async def test_running_a_worker_twice_at_once_is_refused(
    pool: AsyncConnectionPool, schema: str
) -> None:
    worker = make_worker(pool, schema, HandlerRegistry())
    async with running(worker):
        with pytest.raises(InvalidOperationError):
            await worker.run()


async def test_stop_before_run_is_a_no_op(pool: AsyncConnectionPool, schema: str) -> None:
    await make_worker(pool, schema, HandlerRegistry()).stop()


async def test_a_pool_too_small_for_concurrency_plus_listener_is_refused(
    database_url: str, schema: str
) -> None:
    def worker(pool: AsyncConnectionPool, **options: Any) -> Worker:
        return Worker(pool, domain=DOMAIN, registry=HandlerRegistry(), schema=schema, **options)

    async with AsyncConnectionPool(database_url, max_size=30, open=False) as unopened:
        needed = worker(unopened, concurrency=5).required_connections()
        assert needed >= 6  # five handlers plus the listener, at least
        assert (
            worker(unopened, concurrency=5, use_notify=False).required_connections() == needed - 1
        )  # polling only: no listener connection
    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=needed - 1, open=False
    ) as small:
        too_big = worker(small, concurrency=5)
        with pytest.raises(ConfigurationError) as caught:
            await too_big.run()
        message = str(caught.value)
        assert f"max_size={needed - 1}" in message and str(needed) in message
        assert "concurrency" in message
        assert not too_big.ready.is_set()
    async with AsyncConnectionPool(database_url, min_size=1, max_size=needed) as enough:
        await migrate(enough, schema=schema)
        async with running(worker(enough, concurrency=5)):
            pass


async def test_a_pool_of_the_wrong_kind_is_refused() -> None:
    worker = Worker(object(), domain=DOMAIN, registry=HandlerRegistry())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="AsyncConnectionPool"):
        await worker.run()


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"visibility_timeout": 0},
        {"poll_interval": -1},
        {"thread_pool_size": 0},
        {"domain": "bad domain"},
        {"schema": "bad-schema"},
    ],
)
def test_invalid_worker_settings_are_rejected(options: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"domain": DOMAIN, "registry": HandlerRegistry(), **options}
    with pytest.raises(ValidationError):
        Worker(object(), **settings)  # type: ignore[arg-type]


async def test_stop_returns_while_a_dequeue_waits_for_an_unreachable_server(
    database_url: str, pool: AsyncConnectionPool, schema: str
) -> None:
    """A server that is down leaves the dequeue waiting for a pool connection (the pool's
    timeout, 30 s by default); stop() must not wait that long. Here the pool's only
    connection is held elsewhere, which looks the same to the worker."""
    async with starved_pool(database_url) as starved:
        worker = make_worker(starved, schema, HandlerRegistry(), concurrency=1, use_notify=False)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.ready.wait(), 5)
        started = time.monotonic()
        await asyncio.wait_for(worker.stop(timeout=1), 10)
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 5
