"""The main flows through a real PgBouncer in transaction pooling, started by the test.

What a pool behind PgBouncer (< 1.21) needs: ``prepare_threshold=None`` on its
connections (server-side prepared statements do not survive a change of server
connection), and either a direct connection for LISTEN (``listen_conninfo=``) or
``use_notify=False`` (polling). Everything else commandbus does is transaction-scoped:
sends in the caller's transaction, leases (``set_config(..., true)``), retries, sagas,
migrations (``pg_advisory_xact_lock``), and the sync facades.

Skipped only when the ``pgbouncer`` binary is missing (``.ci/run`` installs it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    ProcessStatus,
    TransientCommandError,
    migrate,
)
from commandbus.testing.databases import database_url as url_of
from commandbus.testing.pgbouncer import PgBouncer, find_pgbouncer, pgbouncer
from core._sagas import saga_env
from core.helpers import make_worker, running, wait_for_status

pytestmark = pytest.mark.skipif(
    find_pgbouncer() is None, reason="pgbouncer is not installed (apt install pgbouncer)"
)

#: What a pool behind PgBouncer < 1.21 in transaction pooling needs.
NO_PREPARE: dict[str, Any] = {"prepare_threshold": None}
DOMAIN = "orders"


@pytest.fixture(scope="module")
def running_bouncer(server_url: str) -> Iterator[PgBouncer]:
    with pgbouncer(server_url, pool_mode="transaction", pool_size=10) as started:
        yield started


@pytest.fixture
def bouncer(running_bouncer: PgBouncer, database_url: str) -> PgBouncer:
    """The module's PgBouncer, its URL naming this test's own database."""
    test_database = conninfo_to_dict(database_url)["dbname"]
    return replace(running_bouncer, url=url_of(running_bouncer.url, test_database))


@pytest.fixture
async def bounced_pool(bouncer: PgBouncer, schema: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool whose every connection goes through PgBouncer (migrated through it too)."""
    async with AsyncConnectionPool(
        bouncer.url, min_size=2, max_size=12, kwargs=NO_PREPARE, open=False
    ) as p:
        await migrate(p, schema=schema)
        yield p


async def test_the_bouncer_pools_transactions(bounced_pool: AsyncConnectionPool) -> None:
    """The fixture is what it says: one client connection meets several server sessions."""
    backends = set()
    async with bounced_pool.connection() as conn:
        await conn.set_autocommit(True)
        for _ in range(20):
            backends.add(await _backend(conn))
            async with bounced_pool.connection() as other, other.transaction():
                # Another client holds a server session for the length of a transaction.
                await _backend(other)
                backends.add(await _backend(conn))
            if len(backends) > 1:
                break
    assert len(backends) > 1


async def test_prepared_statements_break_without_the_setting_on_old_pgbouncer(
    bouncer: PgBouncer, bounced_pool: AsyncConnectionPool, schema: str
) -> None:
    """Why NO_PREPARE: psycopg prepares a statement on its 5th run; PgBouncer before 1.21
    hands the next transaction another server session, which lacks (or already has) it."""
    major, minor = (int(x) for x in bouncer.version.split()[-1].split(".")[:2])
    if (major, minor) >= (1, 21):
        pytest.skip("PgBouncer >= 1.21 tracks protocol-level prepared statements")
    async with AsyncConnectionPool(bouncer.url, min_size=2, max_size=2, open=False) as default:
        bus = CommandBus(default, schema=schema)
        with pytest.raises(psycopg.errors.Error, match="prepared statement"):
            for i in range(40):
                await bus.send(DOMAIN, "T", uuid.uuid4(), {"i": i})


async def test_send_joins_the_callers_transaction(
    bounced_pool: AsyncConnectionPool, schema: str
) -> None:
    bus = CommandBus(bounced_pool, schema=schema)
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    async with bounced_pool.connection() as conn:
        async with conn.transaction():
            await conn.execute("SELECT 1")
            for i in range(12):  # past psycopg's prepare threshold
                await bus.send(DOMAIN, "T", kept if i == 0 else uuid.uuid4(), {"i": i}, conn=conn)
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await bus.send(DOMAIN, "T", dropped, {}, conn=conn)
                raise RuntimeError("the caller rolls back")
    assert await bus.get_command(DOMAIN, kept) is not None
    assert await bus.get_command(DOMAIN, dropped) is None


async def _backend(conn: psycopg.AsyncConnection[Any]) -> int:
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


def _flaky_registry(failures: int, attempts: dict[uuid.UUID, int]) -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Flaky")
    async def flaky(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        # A handler's own statement in the worker's transaction, through PgBouncer too.
        await ctx.conn.execute("SELECT 1")
        attempts[command.command_id] = attempts.get(command.command_id, 0) + 1
        if ctx.attempt <= failures:
            raise TransientCommandError("BUSY", "try again")
        return {"attempt": ctx.attempt}

    return registry


async def test_worker_wakes_through_a_direct_listen_connection(
    bounced_pool: AsyncConnectionPool, schema: str, database_url: str
) -> None:
    """Commands and outcomes go through PgBouncer, LISTEN goes straight to the server:
    with a 30 s poll interval only a notification can start the commands in time."""
    bus = CommandBus(bounced_pool, schema=schema)
    attempts: dict[uuid.UUID, int] = {}
    worker = make_worker(
        bounced_pool,
        schema,
        _flaky_registry(0, attempts),
        poll_interval=30,
        listen_conninfo=database_url,
    )
    assert worker.required_connections() == worker.concurrency  # no pool slot for LISTEN
    async with running(worker):
        ids = [uuid.uuid4() for _ in range(10)]
        started = time.monotonic()
        for command_id in ids:
            await bus.send(DOMAIN, "Flaky", command_id, {})
        for command_id in ids:
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        assert time.monotonic() - started < 15
    assert attempts == dict.fromkeys(ids, 1)


async def test_worker_retries_and_polls_when_it_does_not_listen(
    bounced_pool: AsyncConnectionPool, schema: str
) -> None:
    bus = CommandBus(bounced_pool, schema=schema)
    attempts: dict[uuid.UUID, int] = {}
    worker = make_worker(bounced_pool, schema, _flaky_registry(2, attempts), use_notify=False)
    async with running(worker):
        ids = [uuid.uuid4() for _ in range(10)]
        for command_id in ids:
            await bus.send(DOMAIN, "Flaky", command_id, {})
        for command_id in ids:
            done = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
            assert done.attempts == 3
    assert attempts == dict.fromkeys(ids, 3)


async def test_a_saga_completes_and_compensates_through_pgbouncer(
    bounced_pool: AsyncConnectionPool, schema: str, database_url: str
) -> None:
    direct = {"listen_conninfo": database_url, "poll_interval": 0.2}
    async with saga_env(bounced_pool, schema, worker_options=direct, router_options=direct) as env:

        def refuse(command: Command) -> None:
            from commandbus import BusinessRuleError

            raise BusinessRuleError("NOT_SHIPPABLE", "no courier")

        env.script[("ShipOrder", "o-2")] = refuse
        completed, compensated = await asyncio.gather(
            env.start_order("o-1"), env.start_order("o-2")
        )
        info = await env.wait_status(completed, ProcessStatus.COMPLETED)
        assert env.state(info).tracking == "trk-o-1"
        info = await env.wait_status(compensated, ProcessStatus.COMPENSATED)
        state = env.state(info)
        assert state.refunded and state.released


def test_sync_facades_through_pgbouncer(bouncer: PgBouncer, database_url: str, schema: str) -> None:
    from commandbus_sync import SyncCommandBus, SyncRuntime, SyncWorker

    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Plain")
    def plain(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise TransientCommandError("BUSY", "once")
        return {"n": command.data["n"]}

    with SyncRuntime() as runtime:
        pool = runtime.open_pool(bouncer.url, min_size=1, max_size=8, kwargs=NO_PREPARE)
        runtime.run(migrate, pool, schema=schema)
        bus = SyncCommandBus(pool=pool, runtime=runtime, schema=schema)
        worker = SyncWorker(
            pool=pool,
            runtime=runtime,
            domain=DOMAIN,
            registry=registry,
            schema=schema,
            concurrency=4,
            poll_interval=0.1,
            listen_conninfo=database_url,
            retry_policy=make_worker(pool, schema, registry).retry_policy,
        )
        ids = [uuid.uuid4() for _ in range(8)]
        with psycopg.connect(bouncer.url, prepare_threshold=None) as conn:
            for n, command_id in enumerate(ids):  # in the caller's transaction
                bus.send(DOMAIN, "Plain", command_id, {"n": n}, conn=conn)
        worker.run(block=False)
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                statuses = [bus.get_command(DOMAIN, i) for i in ids]
                if all(s is not None and s.status == CommandStatus.COMPLETED for s in statuses):
                    break
                time.sleep(0.05)  # polling with a deadline
            else:
                raise AssertionError(f"not all completed: {statuses}")
        finally:
            worker.stop(5)


def _spawn(command: list[str], env: dict[str, str], log: Any) -> Any:
    import subprocess

    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


CLI_HANDLERS = """
from commandbus import HandlerRegistry

registry = HandlerRegistry()

@registry.handler("orders", "Touch")
async def touch(command, ctx):
    await ctx.conn.execute("SELECT 1")
    return {"n": command.data["n"]}
"""


@pytest.mark.slow
async def test_commandbus_worker_through_pgbouncer_with_its_two_flags(
    bouncer: PgBouncer,
    bounced_pool: AsyncConnectionPool,
    schema: str,
    database_url: str,
    tmp_path: Any,
) -> None:
    """``--no-prepare`` (prepare_threshold=None) and ``--listen-dsn`` (direct LISTEN)."""
    import os
    import signal
    import sys

    (tmp_path / "bounced_handlers.py").write_text(CLI_HANDLERS)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "commandbus", "--dsn", bouncer.url, "--schema", schema]
    command += ["worker", "bounced_handlers:registry", "--domain", "orders=4"]
    command += ["--no-prepare", "--listen-dsn", database_url]
    log = tmp_path / "worker.log"
    process = _spawn(command, env, log)
    try:
        bus = CommandBus(bounced_pool, schema=schema)
        ids = [uuid.uuid4() for _ in range(30)]  # past psycopg's prepare threshold
        for n, command_id in enumerate(ids):
            await bus.send(DOMAIN, "Touch", command_id, {"n": n})
        for command_id in ids:
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED, timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "prepared statement" not in log.read_text()
