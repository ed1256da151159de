"""The sync twins of #15's worker features on a real database: SyncCommandBus.cancel of a
pending and of a running plain handler, SyncWorker(handler_timeout=), a plain handler
writing through ctx.sync_conn, and a concurrency limit honoured by a SyncWorker."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

import commandbus._engine.cancel_watcher
from commandbus import (
    Command,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    RetryPolicy,
)
from commandbus_sync import SyncCommandBus, SyncRuntime, SyncWorker
from sync.helpers import wait_for_status, wait_until

DOMAIN = "jobs"


def start(
    runtime: SyncRuntime, pool: AsyncConnectionPool, schema: str, **options: object
) -> SyncWorker:
    worker = SyncWorker(
        pool=pool,
        runtime=runtime,
        schema=schema,
        domain=DOMAIN,
        concurrency=4,
        poll_interval=0.05,
        retry_policy=RetryPolicy(backoff=(0,)),
        **options,  # type: ignore[arg-type]
    )
    worker.run(block=False)
    return worker


def test_cancel_a_pending_and_a_running_command(
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    sync_bus: SyncCommandBus,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commandbus._engine.cancel_watcher, "CANCEL_POLL_S", 0.05)
    registry = HandlerRegistry()
    started = threading.Event()

    @registry.handler(DOMAIN, "Loop")
    def loop(command: Command, ctx: HandlerContext) -> None:
        started.set()
        deadline = time.monotonic() + 30
        while not ctx.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)

    later = uuid.uuid4()
    sync_bus.send(DOMAIN, "Loop", later, {}, delay=3600)
    assert sync_bus.cancel(DOMAIN, later, reason="not needed") == CommandStatus.CANCELED

    worker = start(runtime, sync_pool, schema, registry=registry)
    try:
        now = uuid.uuid4()
        sync_bus.send(DOMAIN, "Loop", now, {})
        assert started.wait(10)
        assert sync_bus.cancel(DOMAIN, now, reason="stop it") == CommandStatus.IN_PROGRESS
        wait_for_status(sync_bus, DOMAIN, now, CommandStatus.CANCELED)
    finally:
        worker.stop(timeout=5)


def test_handler_timeout_and_sync_conn_through_a_sync_worker(
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    sync_bus: SyncCommandBus,
    schema: str,
) -> None:
    registry = HandlerRegistry()
    release = threading.Event()

    @registry.handler(DOMAIN, "Write")
    def write(command: Command, ctx: HandlerContext) -> dict[str, int]:
        row = ctx.sync_conn.execute("SELECT txid_current()").fetchone()
        assert row is not None
        if ctx.attempt == 1:
            release.wait(30)  # over the worker's timeout
        return {"txid": row[0]}

    worker = start(runtime, sync_pool, schema, registry=registry, handler_timeout=0.3)
    try:
        command_id = uuid.uuid4()
        sync_bus.send(DOMAIN, "Write", command_id, {}, max_attempts=2)
        meta = wait_for_status(sync_bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        assert meta.attempts == 2 and worker.worker.stats["retried"] == 1
        assert meta.result is not None and meta.result["txid"] > 0
    finally:
        worker.stop(timeout=5)
        release.set()


def test_a_sync_worker_honours_a_concurrency_limit(
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    sync_bus: SyncCommandBus,
    schema: str,
) -> None:
    registry = HandlerRegistry()
    lock = threading.Lock()
    running = [0, 0]  # now, most

    @registry.handler(DOMAIN, "Charge", max_running=1)
    def charge(command: Command, ctx: HandlerContext) -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    ids = [uuid.uuid4() for _ in range(6)]
    for command_id in ids:
        sync_bus.send(DOMAIN, "Charge", command_id, {})
    worker = start(runtime, sync_pool, schema, registry=registry)
    try:
        wait_until(
            lambda: worker.worker.stats["completed"] == len(ids) or None,
            timeout=20,
            what="every charge",
        )
    finally:
        worker.stop(timeout=5)
    assert running[1] == 1
