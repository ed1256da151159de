"""SyncWorker on a real database: plain-def and async handlers, blocking and background
runs, graceful stop (also on SIGTERM and Ctrl-C), and nothing left behind."""

from __future__ import annotations

import asyncio
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandStatus,
    ConfigurationError,
    HandlerContext,
    HandlerRegistry,
    InvalidOperationError,
    ValidationError,
    Worker,
)
from commandbus_sync import AsyncContextError, SyncCommandBus, SyncRuntime, SyncWorker, configure
from commandbus_sync import config as sync_config
from sync.helpers import (
    BlockingRun,
    spawn_script,
    wait_for_idle_pool,
    wait_for_status,
    wait_until,
)

DOMAIN = "jobs"


@pytest.fixture
def registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    threads: list[str] = []

    @registry.handler(DOMAIN, "Plain")
    def plain(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return {"echo": command.data, "attempt": ctx.attempt}

    @registry.handler(DOMAIN, "Async")
    async def in_loop(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        return {"async": True}

    registry.threads = threads  # type: ignore[attr-defined]
    return registry


@pytest.fixture
def worker(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str, registry: HandlerRegistry
) -> Iterator[SyncWorker]:
    worker = SyncWorker(
        pool=sync_pool,
        domain=DOMAIN,
        registry=registry,
        runtime=runtime,
        schema=schema,
        concurrency=4,
        poll_interval=0.05,
    )
    try:
        yield worker
    finally:
        worker.stop(timeout=5)


def test_a_plain_def_handler_completes_a_blocking_send_off_the_loop(
    worker: SyncWorker, sync_bus: SyncCommandBus, registry: HandlerRegistry, runtime: SyncRuntime
) -> None:
    worker.run(block=False)
    cid = uuid.uuid4()
    sync_bus.send(DOMAIN, "Plain", cid, {"n": 1})
    meta = wait_for_status(sync_bus, DOMAIN, cid, CommandStatus.COMPLETED)
    assert meta.result == {"echo": {"n": 1}, "attempt": 1}
    (thread_name,) = registry.threads  # type: ignore[attr-defined]
    assert thread_name.startswith(f"commandbus-{DOMAIN}")  # the worker's pool, not the loop
    assert thread_name != repr(runtime)


def test_async_handlers_run_too(worker: SyncWorker, sync_bus: SyncCommandBus) -> None:
    worker.run(block=False)
    cid = uuid.uuid4()
    sync_bus.send(DOMAIN, "Async", cid, {})
    assert wait_for_status(sync_bus, DOMAIN, cid, CommandStatus.COMPLETED).result == {"async": True}


def test_run_without_blocking_returns_once_the_worker_listens(worker: SyncWorker) -> None:
    worker.run(block=False)
    assert worker.running
    assert worker.worker.running
    assert worker.worker.ready.is_set()
    worker.stop(timeout=5)
    assert not worker.running
    assert not worker.worker.running


def test_a_blocking_run_returns_after_stop_from_another_thread(
    worker: SyncWorker, sync_bus: SyncCommandBus
) -> None:
    run = BlockingRun(worker)
    wait_until(lambda: worker.worker.ready.is_set(), what="worker ready")
    cid = uuid.uuid4()
    sync_bus.send(DOMAIN, "Plain", cid, {})
    wait_for_status(sync_bus, DOMAIN, cid, CommandStatus.COMPLETED)
    assert not run.returned.is_set()
    worker.stop(timeout=5)
    assert run.returned.wait(10)
    run.thread.join(10)
    assert run.errors == []


async def loop_tasks() -> int:
    """Tasks on the runtime's loop, this call's own task excluded."""
    return len(asyncio.all_tasks()) - 1


def test_stop_leaves_no_thread_task_or_connection(
    worker: SyncWorker,
    sync_bus: SyncCommandBus,
    sync_pool: AsyncConnectionPool,
    runtime: SyncRuntime,
) -> None:
    threads_before = threading.active_count()
    tasks_before = runtime.run(loop_tasks)
    worker.run(block=False)
    ids = [uuid.uuid4() for _ in range(20)]
    for cid in ids:
        sync_bus.send(DOMAIN, "Plain", cid, {})
    for cid in ids:
        wait_for_status(sync_bus, DOMAIN, cid, CommandStatus.COMPLETED)
    assert threading.active_count() > threads_before  # handler threads and the listener ran
    assert runtime.run(loop_tasks) > tasks_before  # the worker's tasks
    worker.stop(timeout=5)
    assert threading.active_count() == threads_before, threading.enumerate()
    assert runtime.run(loop_tasks) == tasks_before
    wait_for_idle_pool(sync_pool)  # every connection is back


def test_run_overrides_concurrency_and_thread_pool_size(worker: SyncWorker) -> None:
    worker.run(block=False, concurrency=3, thread_pool_size=2)
    assert worker.worker.concurrency == 3
    assert worker.worker.thread_pool_size == 2


@pytest.mark.parametrize("override", [{"concurrency": 0}, {"thread_pool_size": -1}])
def test_invalid_overrides_are_rejected_before_starting(
    worker: SyncWorker, override: dict[str, int]
) -> None:
    with pytest.raises(ValidationError) as caught:
        worker.run(block=False, **override)
    assert caught.value.field == next(iter(override))
    assert not worker.running


def test_a_start_up_error_is_raised_by_run(
    runtime: SyncRuntime, database_url: str, schema: str, registry: HandlerRegistry
) -> None:
    small = runtime.open_pool(database_url, min_size=1, max_size=2)
    worker = SyncWorker(
        pool=small, domain=DOMAIN, registry=registry, runtime=runtime, schema=schema, concurrency=5
    )
    with pytest.raises(ConfigurationError, match="max_size=2"):
        worker.run(block=False)
    assert not worker.running


def test_running_twice_is_refused(worker: SyncWorker) -> None:
    worker.run(block=False)
    with pytest.raises(InvalidOperationError):
        worker.run(block=False)
    assert worker.running  # the first run is unharmed


def test_thread_pool_size_defaults_to_configure(
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    registry: HandlerRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sync_config, "_thread_pool_size", None)
    configure(thread_pool_size=3)
    built = SyncWorker(pool=sync_pool, domain=DOMAIN, registry=registry, runtime=runtime)
    assert built.worker.thread_pool_size == 3
    explicit = SyncWorker(
        pool=sync_pool, domain=DOMAIN, registry=registry, runtime=runtime, thread_pool_size=7
    )
    assert explicit.worker.thread_pool_size == 7


def test_built_from_a_worker(
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    schema: str,
    registry: HandlerRegistry,
    sync_bus: SyncCommandBus,
) -> None:
    core = Worker(
        sync_pool,
        domain=DOMAIN,
        registry=registry,
        schema=schema,
        poll_interval=0.05,
        concurrency=4,
    )
    worker = SyncWorker(core, runtime=runtime)
    assert worker.worker is core
    worker.run(block=False)
    try:
        cid = uuid.uuid4()
        sync_bus.send(DOMAIN, "Plain", cid, {})
        wait_for_status(sync_bus, DOMAIN, cid, CommandStatus.COMPLETED)
    finally:
        worker.stop(timeout=5)


def test_constructor_rejects_what_it_cannot_honour(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, registry: HandlerRegistry
) -> None:
    core = Worker(sync_pool, domain=DOMAIN, registry=registry)
    with pytest.raises(ValidationError):
        SyncWorker(core, pool=sync_pool, runtime=runtime)
    with pytest.raises(ValidationError) as caught:
        SyncWorker(core, runtime=runtime, concurrency=5)  # the worker has its own
    assert caught.value.field == "concurrency"
    with pytest.raises(ValidationError) as caught:
        SyncWorker(pool=sync_pool, registry=registry, runtime=runtime)
    assert caught.value.field == "domain"
    with SyncRuntime() as other:
        foreign = other.open_pool(sync_pool.conninfo, min_size=1, max_size=2)
        with pytest.raises(ValidationError, match="another event loop"):
            SyncWorker(pool=foreign, domain=DOMAIN, registry=registry, runtime=runtime)


def test_close_stops_the_worker_and_closes_the_pool_it_opened(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str, registry: HandlerRegistry
) -> None:
    worker = SyncWorker(
        conninfo=sync_pool.conninfo,
        pool_kwargs={"min_size": 1, "max_size": 6},
        domain=DOMAIN,
        registry=registry,
        runtime=runtime,
        schema=schema,
        concurrency=4,
    )
    worker.run(block=False)
    owned = worker.worker.pool
    worker.close()
    assert not worker.running
    assert owned.closed


SERVE = """
    import os, sys, time, uuid
    from commandbus import HandlerRegistry
    from commandbus_sync import SyncCommandBus, SyncRuntime, SyncWorker

    registry = HandlerRegistry()

    @registry.handler("jobs", "Slow")
    def slow(command, ctx):
        print("started", flush=True)
        release = os.environ["CB_RELEASE"]
        while not os.path.exists(release):  # in flight until the test has signalled us
            time.sleep(0.01)
        return {"done": True}

    schema = os.environ["CB_SCHEMA"]
    with SyncRuntime() as rt:
        pool = rt.open_pool(os.environ["CB_URL"], min_size=1, max_size=4)
        bus = SyncCommandBus(pool=pool, runtime=rt, schema=schema)
        cid = uuid.uuid4()
        bus.send("jobs", "Slow", cid, {})
        SyncWorker(pool=pool, domain="jobs", registry=registry, runtime=rt, schema=schema,
                   concurrency=2).run()
        print("stopped", bus.get_command("jobs", cid).status.value, flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_blocking_run_stops_gracefully_on_signals(
    signum: signal.Signals, sync_pool: AsyncConnectionPool, schema: str, tmp_path: Path
) -> None:
    """The in-flight handler finishes and its outcome is recorded before run() returns."""
    release = tmp_path / "release"
    proc = spawn_script(SERVE, CB_URL=sync_pool.conninfo, CB_SCHEMA=schema, CB_RELEASE=str(release))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signum)  # while the handler is certainly still running
        release.touch()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "stopped COMPLETED"


def test_close_after_a_failed_start_still_closes_the_pool_it_opened(
    runtime: SyncRuntime, database_url: str, schema: str, registry: HandlerRegistry
) -> None:
    worker = SyncWorker(
        conninfo=database_url,
        pool_kwargs={"min_size": 1, "max_size": 2},
        domain=DOMAIN,
        registry=registry,
        runtime=runtime,
        schema=schema,
        concurrency=5,
    )
    with pytest.raises(ConfigurationError):
        worker.run(block=False)
    worker.close()  # the start-up error was the caller's already: not raised again
    assert worker.worker.pool.closed


def test_stop_from_a_plain_def_handler_does_not_deadlock(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str, sync_bus: SyncCommandBus
) -> None:
    registry = HandlerRegistry()
    holder: list[SyncWorker] = []

    @registry.handler(DOMAIN, "Shutdown")
    def shutdown(command: Command, ctx: HandlerContext) -> dict[str, bool]:
        holder[0].stop(timeout=5)  # only asks: waiting would wait for this very handler
        return {"asked": True}

    worker = SyncWorker(
        pool=sync_pool,
        domain=DOMAIN,
        registry=registry,
        runtime=runtime,
        schema=schema,
        concurrency=2,
        poll_interval=0.05,
    )
    holder.append(worker)
    worker.run(block=False)
    cid = uuid.uuid4()
    sync_bus.send(DOMAIN, "Shutdown", cid, {})
    wait_until(lambda: not worker.worker.running, what="worker stopped by its handler")
    assert wait_for_status(sync_bus, DOMAIN, cid, CommandStatus.COMPLETED).result == {"asked": True}
    worker.stop()  # joins what is left; nothing running, returns at once


def test_run_from_a_running_event_loop_is_refused(worker: SyncWorker) -> None:
    async def misuse() -> None:
        worker.run(block=False)

    with pytest.raises(AsyncContextError, match=r"await Worker\.run"):
        asyncio.run(misuse())
    assert not worker.running


TWICE = """
    import logging, os, time, uuid
    from commandbus import HandlerRegistry
    from commandbus_sync import SyncCommandBus, SyncRuntime, SyncWorker

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    registry = HandlerRegistry()

    @registry.handler("jobs", "Stuck")
    def stuck(command, ctx):
        print("started", flush=True)
        while not os.path.exists(os.environ["CB_RELEASE"]):  # outlives the graceful stop
            time.sleep(0.01)

    schema = os.environ["CB_SCHEMA"]
    with SyncRuntime() as rt:
        pool = rt.open_pool(os.environ["CB_URL"], min_size=1, max_size=4)
        SyncCommandBus(pool=pool, runtime=rt, schema=schema).send("jobs", "Stuck", uuid.uuid4(), {})
        try:
            SyncWorker(pool=pool, domain="jobs", registry=registry, runtime=rt, schema=schema,
                       concurrency=2).run()
        finally:
            print("run ended", flush=True)  # the stuck handler thread still holds exit
"""


def test_a_second_sigterm_cancels_the_graceful_stop(
    sync_pool: AsyncConnectionPool, schema: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    proc = spawn_script(TWICE, CB_URL=sync_pool.conninfo, CB_SCHEMA=schema, CB_RELEASE=str(release))
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGTERM)
        while "stopping gracefully" not in (line := proc.stderr.readline()):
            assert line, "the worker never said it was stopping"
        proc.send_signal(signal.SIGTERM)  # the handler is still stuck: only a cancel ends it
        assert proc.stdout.readline().strip() == "run ended"  # without the stuck handler
        release.touch()  # now let the abandoned handler thread finish
        proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM


def test_hooks_pass_through_the_sync_facades(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str, registry: HandlerRegistry
) -> None:
    from commandbus.hooks import CommandSent, HandlerFinished

    seen: list[Any] = []
    bus = SyncCommandBus(pool=sync_pool, runtime=runtime, schema=schema, hooks=[seen.append])
    worker = SyncWorker(
        pool=sync_pool,
        domain=DOMAIN,
        registry=registry,
        runtime=runtime,
        schema=schema,
        concurrency=4,
        poll_interval=0.05,
        hooks=[seen.append],
    )
    worker.run(block=False)
    try:
        cid = uuid.uuid4()
        bus.send(DOMAIN, "Plain", cid, {"n": 1})
        wait_for_status(bus, DOMAIN, cid, CommandStatus.COMPLETED)
        wait_until(lambda: any(isinstance(e, HandlerFinished) for e in seen), what="the event")
    finally:
        worker.stop(timeout=5)

    sent = [e for e in seen if isinstance(e, CommandSent)]
    finished = [e for e in seen if isinstance(e, HandlerFinished)]
    assert [e.command_id for e in sent] == [cid]
    assert [(e.command_id, e.outcome) for e in finished] == [(cid, "COMPLETED")]


def test_drain_runs_everything_due_and_returns_their_ids(
    worker: SyncWorker, sync_bus: SyncCommandBus
) -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    for command_id in ids:
        sync_bus.send(DOMAIN, "Plain", command_id, {"n": 1})
    assert sorted(worker.drain(timeout=10)) == sorted(ids)
    for command_id in ids:
        meta = sync_bus.get_command(DOMAIN, command_id)
        assert meta is not None and meta.status == CommandStatus.COMPLETED
    assert worker.drain() == []  # nothing left due
