"""The pytest plugin and the helpers of ``commandbus.testing`` (issue #17 item 1).

The plugin is run the way users run it: ``pytester`` runs a small test file in a fresh
directory (none of this repository's conftest), with the plugin loaded from its entry
point, on this session's server (``DATABASE_URL``).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    CommandBus,
    CommandStatus,
    HandlerRegistry,
    InvalidOperationError,
    PermanentCommandError,
    RetryPolicy,
    TransientCommandError,
)
from commandbus.models import Command
from commandbus.testing import (
    CommandNotReachedError,
    drain,
    make_context,
    wait_for_command,
)
from core.helpers import make_worker, running

pytest_plugins = ["pytester"]

DOMAIN = "orders"

USER_TESTS = """
import uuid

import pytest

from commandbus import CommandStatus, HandlerRegistry
from commandbus.testing import drain, wait_for_command
from commandbus_sync.testing import drain as drain_sync

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"  # psycopg's async API runs on asyncio


registry = HandlerRegistry()


@registry.handler("orders", "Ship")
async def ship(command, ctx):
    await ctx.conn.execute("INSERT INTO shipped VALUES (%s)", [command.data["order"]])
    return {"shipped": command.data["order"]}


def remember(pytester_dir, schema):
    with open(f"{pytester_dir}/schemas.txt", "a") as f:
        f.write(schema + "\\n")


async def test_async_fixtures(commandbus_pool, commandbus_bus, commandbus_schema):
    remember(PYTESTER_DIR, commandbus_schema)
    assert commandbus_bus.schema == commandbus_schema
    async with commandbus_pool.connection() as conn:
        cur = await conn.execute("SELECT current_schema()")
        assert (await cur.fetchone())[0] == commandbus_schema
        await conn.execute("CREATE TABLE shipped (order_id int)")  # in the test's schema
    command_id = uuid.uuid4()
    await commandbus_bus.send("orders", "Ship", command_id, {"order": 7})
    (done,) = await drain(registry, commandbus_bus)
    assert (done.command_id, done.status, done.result) == (
        command_id, CommandStatus.COMPLETED, {"shipped": 7}
    )
    assert (await wait_for_command(commandbus_bus, "orders", command_id)).attempts == 1


async def test_every_test_gets_an_empty_schema(commandbus_bus, commandbus_schema):
    remember(PYTESTER_DIR, commandbus_schema)
    assert await commandbus_bus.query_commands() == []


def test_sync_fixtures(commandbus_sync_runtime, commandbus_sync_bus, commandbus_sync_pool,
                       commandbus_schema):
    remember(PYTESTER_DIR, commandbus_schema)
    assert commandbus_sync_bus.runtime is commandbus_sync_runtime
    commandbus_sync_runtime.run(_create_table, commandbus_sync_pool)
    command_id = uuid.uuid4()
    commandbus_sync_bus.send("orders", "Ship", command_id, {"order": 8})
    (done,) = drain_sync(registry, commandbus_sync_bus)
    assert done.status == CommandStatus.COMPLETED


async def _create_table(pool):
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE shipped (order_id int)")
"""


def test_a_users_test_file_gets_fresh_schemas_that_are_dropped_after(
    pytester: pytest.Pytester, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    pytester.makepyfile(test_user=USER_TESTS.replace("PYTESTER_DIR", repr(str(pytester.path))))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:xdist", "-q")
    result.assert_outcomes(passed=3)
    schemas = (pytester.path / "schemas.txt").read_text().split()
    assert len(set(schemas)) == 3
    with psycopg.connect(database_url) as conn:
        left = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", [schemas]
        ).fetchall()
    assert left == []


def test_the_plugin_is_registered_and_lists_its_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:randomly")
    out = result.stdout.str()
    for name in (
        "commandbus_database_url",
        "commandbus_schema",
        "commandbus_pool",
        "commandbus_bus",
        "commandbus_sync_runtime",
        "commandbus_sync_pool",
        "commandbus_sync_bus",
    ):
        assert name in out, name


def test_importing_the_plugin_starts_nothing_and_stays_light() -> None:
    code = (
        "import sys, threading\n"
        "import commandbus.testing.plugin\n"
        "heavy = {'commandbus_sync', 'anyio', 'commandbus_web'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert threading.active_count() == 1\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={})
    assert done.returncode == 0, done.stderr


async def test_the_plugin_lives_beside_this_repositorys_own_fixtures(
    bus: CommandBus, commandbus_bus: CommandBus, schema: str, commandbus_schema: str
) -> None:
    assert schema != commandbus_schema
    await commandbus_bus.send(DOMAIN, "Ship", uuid.uuid4(), {})
    assert await bus.query_commands() == []
    assert len(await commandbus_bus.query_commands()) == 1


# -- wait_for_command --------------------------------------------------------------------


async def test_wait_for_command_returns_once_the_worker_completed_it(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "Ship", _ok)
    command_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry, domain=DOMAIN)):
        await bus.send(DOMAIN, "Ship", command_id, {"n": 1})
        done = await wait_for_command(bus, DOMAIN, command_id, timeout=10)
    assert (done.status, done.result) == (CommandStatus.COMPLETED, {"n": 1})


async def test_wait_for_command_fails_at_once_with_the_audit_trail_when_parked(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "Ship", _broken)
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Ship", command_id, {})
    await drain(make_worker(pool, schema, registry, domain=DOMAIN))
    with pytest.raises(CommandNotReachedError) as raised:
        await wait_for_command(bus, DOMAIN, command_id, timeout=60)
    message = str(raised.value)
    assert "settled on another status" in message
    assert "IN_TROUBLESHOOTING_QUEUE" in message and "NO_STOCK" in message
    assert "SENT" in message and "MOVED_TO_TROUBLESHOOTING_QUEUE" in message
    # Waiting for the parked status itself is fine.
    parked = await wait_for_command(
        bus, DOMAIN, command_id, status=[CommandStatus.IN_TROUBLESHOOTING_QUEUE, "FAILED"]
    )
    assert parked.last_error_code == "NO_STOCK"


async def test_wait_for_command_fails_at_the_deadline_with_the_trail(bus: CommandBus) -> None:
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Ship", command_id, {})  # no worker: stays PENDING
    with pytest.raises(CommandNotReachedError) as raised:
        await wait_for_command(bus, DOMAIN, command_id, timeout=0.2)
    assert "not within 0.2 s" in str(raised.value)
    assert "PENDING" in str(raised.value) and "SENT" in str(raised.value)
    with pytest.raises(CommandNotReachedError, match="never written"):
        await wait_for_command(bus, DOMAIN, uuid.uuid4(), timeout=0.05)


# -- drain -------------------------------------------------------------------------------


async def test_drain_runs_what_is_due_and_what_the_handlers_send(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Order")
    async def order(command: Command, ctx: Any) -> dict[str, Any]:
        # Sent in the handler's transaction: committed with its outcome.
        await bus.send("shipping", "Ship", uuid.uuid4(), command.data, conn=ctx.conn)
        return {"ordered": True}

    registry.register("shipping", "Ship", _ok)
    first = [uuid.uuid4(), uuid.uuid4()]
    for command_id in first:
        await bus.send(DOMAIN, "Order", command_id, {"n": 1})
    later = uuid.uuid4()
    await bus.send(DOMAIN, "Order", later, {"n": 2}, delay=3600)  # not due: not run

    outcomes = await drain(registry, bus)

    assert [o.command_id for o in outcomes[:2]] == first
    assert [(o.domain, o.status) for o in outcomes] == [
        (DOMAIN, CommandStatus.COMPLETED),
        (DOMAIN, CommandStatus.COMPLETED),
        ("shipping", CommandStatus.COMPLETED),
        ("shipping", CommandStatus.COMPLETED),
    ]
    assert later not in {o.command_id for o in outcomes}
    assert await drain(registry, bus) == []  # nothing due is left


async def test_drain_applies_the_workers_retry_rules(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "Flaky", _flaky)
    at_once, with_backoff = uuid.uuid4(), uuid.uuid4()
    await bus.send(DOMAIN, "Flaky", at_once, {"fail": 2}, max_attempts=3)

    (done,) = await drain(registry, bus, retry_policy=RetryPolicy(backoff=(0,)))
    assert (done.status, done.attempts) == (CommandStatus.COMPLETED, 3)

    await bus.send(DOMAIN, "Flaky", with_backoff, {"fail": 1})
    (waiting,) = await drain(registry, bus)  # the default backoff is not waited for
    assert (waiting.status, waiting.attempts) == (CommandStatus.PENDING, 1)
    assert waiting.last_error_code == "FLAKY"


async def test_drain_refuses_a_running_worker(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "Ship", _ok)
    worker = make_worker(pool, schema, registry, domain=DOMAIN)
    async with running(worker):
        with pytest.raises(InvalidOperationError, match="running"):
            await drain(worker)
    pruner = worker.pruner
    assert pruner is not None  # a drain runs no pruner, and leaves the worker's in place
    assert await drain([worker]) == []  # stopped, it drains (nothing is due)
    assert worker.pruner is pruner


async def test_drain_stops_at_its_timeout(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "Hang", _hang)
    await bus.send(DOMAIN, "Hang", uuid.uuid4(), {})
    with pytest.raises(TimeoutError, match="still running"):
        await drain(registry, bus, timeout=0.3)


# -- make_context ------------------------------------------------------------------------


async def test_make_context_gives_an_async_handler_a_real_context(
    pool: AsyncConnectionPool, schema: str
) -> None:
    extended: list[float] = []
    async with pool.connection() as conn:
        ctx = make_context(attempt=3, max_attempts=3, conn=conn, on_extend=extended.append)
        assert ctx.is_last_attempt
        await ctx.extend_visibility(60)
        assert ctx.conn is conn
        cur = await ctx.conn.execute("SELECT 41 + 1")
        assert (await cur.fetchone()) == (42,)
        await conn.rollback()
    assert extended == [60.0]
    assert not make_context().is_last_attempt


def test_make_context_gives_a_plain_handler_its_sync_conn(database_url: str) -> None:
    extended: list[float] = []

    def handler(command: Command, ctx: Any) -> dict[str, Any]:
        ctx.extend_visibility_sync(5)
        row = ctx.sync_conn.execute("SELECT %s::int * 2", [command.data["n"]]).fetchone()
        return {"twice": row[0]}

    with psycopg.connect(database_url) as conn:
        ctx = make_context(sync_conn=conn, on_extend=extended.append)
        command = Command(DOMAIN, "Double", uuid.uuid4(), {"n": 21})
        assert handler(command, ctx) == {"twice": 42}
    assert extended == [5.0]


# -- handlers ----------------------------------------------------------------------------


async def _ok(command: Command, ctx: Any) -> dict[str, Any]:
    return dict(command.data)


async def _broken(command: Command, ctx: Any) -> None:
    raise PermanentCommandError("NO_STOCK", "nothing left to ship")


async def _flaky(command: Command, ctx: Any) -> dict[str, Any]:
    if ctx.attempt <= command.data["fail"]:
        raise TransientCommandError("FLAKY", f"attempt {ctx.attempt} failed")
    return {"attempt": ctx.attempt}


async def _hang(command: Command, ctx: Any) -> None:
    import asyncio

    await asyncio.Event().wait()
