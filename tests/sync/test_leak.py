"""Repeated runtime start, pool open, send, worker run/stop and shutdown leave no thread
and no connection behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import psycopg

from commandbus import Command, CommandStatus, HandlerContext, HandlerRegistry, migrate
from commandbus_sync import SyncCommandBus, SyncRuntime, SyncWorker
from sync.helpers import wait_for_idle_pool, wait_for_status

registry = HandlerRegistry()


@registry.handler("leak", "T")
def handle(command: Command, ctx: HandlerContext) -> None:
    return None


def open_connections(database_url: str, application_name: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_fifty_cycles_leave_threads_and_connections_at_baseline(
    database_url: str, schema: str
) -> None:
    app = f"cb-leak-{uuid.uuid4().hex[:8]}"
    pool_kwargs = {"min_size": 2, "max_size": 4, "kwargs": {"application_name": app}}
    with SyncRuntime() as rt:
        rt.run(migrate, rt.open_pool(database_url, min_size=1), schema=schema)
    baseline = threading.active_count()
    for _ in range(50):
        with SyncRuntime() as rt:
            pool = rt.open_pool(database_url, **pool_kwargs)
            bus = SyncCommandBus(pool=pool, runtime=rt, schema=schema)
            command_id = uuid.uuid4()
            bus.send("leak", "T", command_id, {})
            worker = SyncWorker(
                pool=pool,
                domain="leak",
                registry=registry,
                runtime=rt,
                schema=schema,
                concurrency=2,
                thread_pool_size=2,
            )
            worker.run(block=False)
            wait_for_status(bus, "leak", command_id, CommandStatus.COMPLETED)
            worker.stop(timeout=5)
            wait_for_idle_pool(pool)  # all connections returned
    assert threading.active_count() == baseline, threading.enumerate()
    # Backends exit asynchronously after the client disconnects: poll with a deadline.
    deadline = time.monotonic() + 10
    while open_connections(database_url, app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_connections(database_url, app) == 0


def test_a_runtime_never_shut_down_still_closes_its_pools_at_exit(database_url: str) -> None:
    app = f"cb-exit-{uuid.uuid4().hex[:8]}"
    code = """
        import os
        from commandbus_sync import SyncRuntime
        rt = SyncRuntime()  # deliberately never shut down
        app = {"application_name": os.environ["CB_APP"]}
        rt.open_pool(os.environ["CB_URL"], min_size=2, kwargs=app)
        print("opened", flush=True)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CB_URL": database_url, "CB_APP": app},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "opened"
    assert out.stderr == ""  # closed cleanly: no warning about abandoned loops or pools
    deadline = time.monotonic() + 10
    while open_connections(database_url, app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_connections(database_url, app) == 0
