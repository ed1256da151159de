"""The worker registry: running workers and routers keep a row with a heartbeat, leave
it on a clean stop, and a row whose heartbeat stopped (a process killed hard) reads as
stale. Heartbeat failures never take a worker down and are logged once per outage."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import signal
import socket
import sys
import textwrap
import uuid
from pathlib import Path

import anyio
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    ValidationError,
    WorkerInfo,
    _registry,
    _sql,
    list_workers,
    migrate,
)
from commandbus.migrations import _PRELUDE
from core._sagas import REPLY_QUEUE, SAGA_DOMAIN, make_router, running_router, saga_env
from core.helpers import (
    DOMAIN,
    execute,
    make_worker,
    running,
    wait_for_status,
    wait_until,
)
from core.test_cli import HANDLERS, _env, db

pytestmark = pytest.mark.anyio

#: A heartbeat interval short enough to watch several beats in a test.
FAST = 0.05


@pytest.fixture
def fast_heartbeats(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(_registry, "HEARTBEAT_INTERVAL_S", FAST)
    return FAST


async def _rows(pool: AsyncConnectionPool, schema: str, **filters: str) -> list[WorkerInfo]:
    return await list_workers(pool, schema=schema, **filters)


async def test_a_running_worker_and_router_are_registered_and_leave_on_a_clean_stop(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema, worker=False, router=False) as env:
        worker = make_worker(pool, schema, HandlerRegistry(), domain=SAGA_DOMAIN, concurrency=3)
        router = make_router(env, concurrency=2)
        async with running(worker), running_router(router):
            found = await wait_until(
                lambda: _two(pool, schema), what="the worker and the router to register"
            )
            by_kind = {w.kind: w for w in found}
            assert set(by_kind) == {"worker", "router"}

            mine = by_kind["worker"]
            assert mine.id == worker.name
            assert (mine.host, mine.pid) == (socket.gethostname(), os.getpid())
            assert (mine.domain, mine.concurrency, mine.in_flight) == (SAGA_DOMAIN, 3, 0)
            assert mine.version == importlib.metadata.version("commandbus-core")
            assert mine.heartbeat_interval == _registry.HEARTBEAT_INTERVAL_S
            assert mine.started_at <= mine.heartbeat_at
            assert not mine.stale and mine.heartbeat_age < mine.heartbeat_interval

            routed = by_kind["router"]
            assert routed.id == _registry.member_id(router)
            assert routed.id.startswith(f"{socket.gethostname()}:{os.getpid()}:")
            assert (routed.domain, routed.concurrency) == (REPLY_QUEUE, 2)
            assert not routed.stale

            assert [w.id for w in await _rows(pool, schema, domain=SAGA_DOMAIN)] == [mine.id]
            assert [w.id for w in await _rows(pool, schema, kind="router")] == [routed.id]
        # Stopped cleanly: both rows are gone at once.
        assert await _rows(pool, schema) == []


async def _two(pool: AsyncConnectionPool, schema: str) -> list[WorkerInfo] | None:
    rows = await _rows(pool, schema)
    return rows if len(rows) == 2 else None


async def test_a_cancelled_worker_leaves_the_registry_too(
    pool: AsyncConnectionPool, schema: str
) -> None:
    worker = make_worker(pool, schema, HandlerRegistry())
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: _rows(pool, schema), what="the worker to register")

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await _rows(pool, schema) == []


async def test_the_heartbeat_advances_and_reports_commands_in_flight(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, fast_heartbeats: float
) -> None:
    release = asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Hold")
    async def hold(command: Command, ctx: HandlerContext) -> None:
        await release.wait()

    async with running(make_worker(pool, schema, registry)):
        (first,) = await wait_until(lambda: _rows(pool, schema), what="the registration")
        assert first.heartbeat_interval == fast_heartbeats

        async def beaten() -> WorkerInfo | None:
            (row,) = await _rows(pool, schema)
            return row if row.heartbeat_at > first.heartbeat_at else None

        later = await wait_until(beaten, what="a later heartbeat")
        assert later.started_at == first.started_at

        ids = [uuid.uuid4() for _ in range(2)]
        for command_id in ids:
            await bus.send(DOMAIN, "Hold", command_id, {})

        async def in_flight(n: int) -> bool:
            (row,) = await _rows(pool, schema)
            return row.in_flight == n

        await wait_until(lambda: in_flight(2), what="2 commands in flight in the registry")
        release.set()
        for command_id in ids:
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        await wait_until(lambda: in_flight(0), what="nothing in flight in the registry")


async def test_a_row_whose_heartbeat_is_three_intervals_old_reads_as_stale(
    pool: AsyncConnectionPool, schema: str
) -> None:
    """As a process killed hard leaves it: nobody refreshes or deletes the row."""
    for name, age in (("fresh", 0), ("late", 25), ("lost", 31)):
        await execute(
            pool,
            schema,
            """
            INSERT INTO {schema}.workers (id, kind, host, pid, domain, concurrency, version,
                                          heartbeat_interval, started_at, heartbeat_at)
            VALUES (%s, 'worker', 'gone-host', 42, 'payments', 5, '0.1.0', 10,
                    now() - interval '1 hour', now() - make_interval(secs => %s))
            """,
            [name, age],
        )

    rows = {w.id: w for w in await _rows(pool, schema)}

    assert {name: w.stale for name, w in rows.items()} == {
        "fresh": False,
        "late": False,  # 2.5 intervals: late, not yet lost
        "lost": True,
    }
    assert 30 < rows["lost"].heartbeat_age < 60


async def test_a_registration_forgets_rows_stale_for_a_day(
    pool: AsyncConnectionPool, schema: str
) -> None:
    await execute(
        pool,
        schema,
        """
        INSERT INTO {schema}.workers (id, kind, host, pid, domain, concurrency, version,
                                      heartbeat_interval, heartbeat_at)
        VALUES ('last-week', 'worker', 'h', 1, 'payments', 1, '0.1.0', 10,
                now() - interval '7 days'),
               ('this-morning', 'worker', 'h', 2, 'payments', 1, '0.1.0', 10,
                now() - interval '3 hours')
        """,
    )
    async with running(make_worker(pool, schema, HandlerRegistry())) as worker:
        await wait_until(lambda: _has(pool, schema, worker.name), what="the worker to register")
        assert {w.id for w in await _rows(pool, schema)} == {"this-morning", worker.name}


async def _has(pool: AsyncConnectionPool, schema: str, member: str) -> bool:
    return any(w.id == member for w in await _rows(pool, schema))


async def test_a_deleted_row_is_registered_again_by_the_next_heartbeat(
    pool: AsyncConnectionPool, schema: str, fast_heartbeats: float
) -> None:
    async with running(make_worker(pool, schema, HandlerRegistry())) as worker:
        (first,) = await wait_until(lambda: _rows(pool, schema), what="the registration")
        await execute(pool, schema, "DELETE FROM {schema}.workers")

        (again,) = await wait_until(lambda: _rows(pool, schema), what="a new registration")
        assert again.id == worker.name
        assert again.started_at == first.started_at  # the worker did not restart


async def test_heartbeat_failures_are_logged_once_per_outage_and_the_worker_keeps_working(
    pool: AsyncConnectionPool,
    schema: str,
    bus: CommandBus,
    fast_heartbeats: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Job")
    async def job(command: Command, ctx: HandlerContext) -> None:
        return None

    caplog.set_level(logging.INFO, logger="commandbus.registry")
    async with running(make_worker(pool, schema, registry)) as worker:
        await wait_until(lambda: _rows(pool, schema), what="the registration")
        # Every heartbeat now fails, as against a database that refuses writes. The
        # sequence counts the refusals (nextval survives the rollback).
        await execute(
            pool,
            schema,
            """
            CREATE SEQUENCE {schema}.refusals;
            CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM nextval(TG_TABLE_SCHEMA || '.refusals');
                RAISE EXCEPTION 'refused by the test';
            END $$;
            CREATE TRIGGER refuse BEFORE UPDATE ON {schema}.workers
            FOR EACH ROW EXECUTE FUNCTION {schema}.refuse();
            """,
        )
        await wait_until(lambda: _refusals(pool, schema, 5), what="5 refused heartbeats")
        command_id = uuid.uuid4()
        await bus.send(DOMAIN, "Job", command_id, {})
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        assert worker.running

        await execute(pool, schema, "DROP TRIGGER refuse ON {schema}.workers")
        await wait_until(lambda: _restored(caplog), what="the heartbeat to work again")

    warnings = [r for r in caplog.records if r.name == "commandbus.registry" and r.levelno >= 30]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING
    assert "heartbeat failed" in message and "refused by the test" in message
    assert worker.name in message
    assert not any(r.exc_info for r in warnings)  # a database error: no traceback


async def _refusals(pool: AsyncConnectionPool, schema: str, n: int) -> bool:
    rows = await execute(pool, schema, "SELECT last_value, is_called FROM {schema}.refusals")
    last_value, is_called = rows[0]
    return bool(is_called) and last_value >= n


async def _restored(caplog: pytest.LogCaptureFixture) -> bool:
    return any("heartbeat works again" in r.getMessage() for r in caplog.records)


async def test_a_worker_killed_hard_leaves_its_row_which_reads_as_stale(
    pool: AsyncConnectionPool, database_url: str, schema: str, tmp_path: Path
) -> None:
    (tmp_path / "cli_handlers.py").write_text(textwrap.dedent(HANDLERS))
    command = [sys.executable, "-m", "commandbus.cli", *db(database_url, schema)]
    command += ["worker", "cli_handlers:registry", "--domain", "cli", "--concurrency", "2"]
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    process = await anyio.open_process(command, env=env, stdout=None, stderr=None)
    async with process:
        try:
            (row,) = await wait_until(
                lambda: _rows(pool, schema, domain="cli"), timeout=20, what="the registration"
            )
            assert row.pid == process.pid and row.concurrency == 2 and not row.stale
            process.send_signal(signal.SIGKILL)
            with anyio.fail_after(10):
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()

    (left,) = await _rows(pool, schema, domain="cli")
    assert left.id == row.id
    # Three heartbeat intervals later (moved back in time rather than waited for):
    await execute(
        pool,
        schema,
        "UPDATE {schema}.workers SET heartbeat_at = heartbeat_at"
        " - make_interval(secs => 3 * heartbeat_interval + 1)",
    )
    (lost,) = await _rows(pool, schema, domain="cli")
    assert lost.stale and lost.id == row.id


async def test_migration_5_applies_on_top_of_a_version_4_schema(
    database_url: str, schema: str
) -> None:
    async with AsyncConnectionPool(database_url, min_size=1, max_size=8, open=False) as old:
        async with old.connection() as conn:
            await conn.execute(_sql.render(_PRELUDE, schema), prepare=False)
            for version, name, template in _sql.migration_files():
                if version <= 4:
                    await conn.execute(_sql.render(template, schema), prepare=False)
                    await conn.execute(
                        sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
                            sql.Identifier(schema, "schema_version")
                        ),
                        [version, name],
                    )
        with pytest.raises(Exception, match="workers"):
            await list_workers(old, schema=schema)

        after_4 = [version for version, _, _ in _sql.migration_files() if version > 4]
        assert await migrate(old, schema=schema) == after_4

        async with running(make_worker(old, schema, HandlerRegistry())) as worker:
            (row,) = await wait_until(lambda: _rows(old, schema), what="the registration")
            assert row.id == worker.name


async def test_list_workers_checks_its_filters(pool: AsyncConnectionPool, schema: str) -> None:
    with pytest.raises(ValidationError, match="kind"):
        await list_workers(pool, schema=schema, kind="robot")
    with pytest.raises(ValidationError, match="domain"):
        await list_workers(pool, schema=schema, domain="no spaces")
    with pytest.raises(ValidationError, match="schema"):
        await list_workers(pool, schema="bad-schema")
