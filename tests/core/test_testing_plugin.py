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
from psycopg import sql
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
from commandbus.migrations import migration_sql
from commandbus.models import Command
from commandbus.testing import (
    CommandNotReachedError,
    drain,
    make_context,
    wait_for_command,
)
from core.helpers import make_worker, running
from test_install import quick_starts

pytest_plugins = ["pytester"]

DOMAIN = "orders"

USER_TESTS = """
import asyncio
import os
import uuid

import pytest
from psycopg.conninfo import conninfo_to_dict

from commandbus import CommandBus, CommandStatus, HandlerRegistry, Worker
from commandbus.testing import drain, wait_for_command
from commandbus_sync.testing import drain as drain_sync

registry = HandlerRegistry()


@registry.handler("orders", "Ship")
async def ship(command, ctx):
    await ctx.conn.execute("INSERT INTO shipped VALUES (%s)", [command.data["order"]])
    return {"shipped": command.data["order"]}


def remember(url):
    with open(os.path.join(HERE, "databases.txt"), "a") as f:
        f.write(conninfo_to_dict(url)["dbname"] + "\\n")


@pytest.fixture(autouse=True)
def remember_the_template(commandbus_template):
    with open(os.path.join(HERE, "databases.txt"), "a") as f:
        f.write(commandbus_template.name + "\\n")


@pytest.mark.anyio
async def test_the_defaults_run_on_the_tests_own_database(commandbus_pool, commandbus_database_url):
    remember(commandbus_database_url)
    assert os.environ["DATABASE_URL"] == commandbus_database_url
    async with commandbus_pool.connection() as conn:
        await conn.execute("CREATE TABLE shipped (order_id int)")
    bus = CommandBus(commandbus_pool)  # the default schema
    command_id = uuid.uuid4()
    await bus.send("orders", "Ship", command_id, {"order": 7})
    worker = Worker(commandbus_pool, domain="orders", registry=registry)
    run = asyncio.create_task(worker.run())
    done = await wait_for_command(bus, "orders", command_id, timeout=20)
    await worker.stop()
    await run
    assert (done.status, done.result) == (CommandStatus.COMPLETED, {"shipped": 7})


@pytest.mark.anyio
async def test_every_test_starts_empty(commandbus_bus, commandbus_pool, commandbus_database_url):
    remember(commandbus_database_url)
    assert commandbus_bus.schema == "commandbus"
    assert await commandbus_bus.query_commands() == []
    async with commandbus_pool.connection() as conn:
        await conn.execute("CREATE TABLE shipped (order_id int)")  # no other test's table
    command_id = uuid.uuid4()
    await commandbus_bus.send("orders", "Ship", command_id, {"order": 8})
    (done,) = await drain(registry, commandbus_bus)
    assert (done.command_id, done.status) == (command_id, CommandStatus.COMPLETED)


def test_sync_fixtures(commandbus_sync_runtime, commandbus_sync_bus, commandbus_sync_pool,
                       commandbus_database_url):
    remember(commandbus_database_url)
    assert commandbus_sync_bus.runtime is commandbus_sync_runtime
    commandbus_sync_runtime.run(_create_table, commandbus_sync_pool)
    commandbus_sync_bus.send("orders", "Ship", uuid.uuid4(), {"order": 9})
    (done,) = drain_sync(registry, commandbus_sync_bus)
    assert done.status == CommandStatus.COMPLETED


def test_the_readme_quick_start_as_written(commandbus_database_url):
    remember(commandbus_database_url)
    exec(QUICK_START, {"__name__": "quick_start"})  # reads DATABASE_URL, CommandBus(pool)


async def _create_table(pool):
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE shipped (order_id int)")
"""


def _run_user_tests(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """``source`` as a user's test file, run by pytest in this process (the plugin loaded
    from its entry point, none of this repository's conftest): a second interpreter with
    every plugin imported again would cost seconds a run."""
    pytester.makepyfile(test_user=source)
    # Not pytest-django: this process may have set Django up already (tests/dj).
    return pytester.runpytest_inprocess(
        "-p",
        "no:randomly",
        "-p",
        "no:xdist",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:django",
        "-q",
        *args,
    )


def _databases(server_url: str, names: list[str]) -> list[str]:
    with psycopg.connect(server_url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", [names]
        ).fetchall()
    return [row[0] for row in rows]


def _contents(url: str) -> list[tuple[str, str, int]]:
    """Every table of the database outside the catalogs, with its rows counted."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            " ORDER BY 1, 2"
        ).fetchall()
        return [
            (
                schema,
                table,
                conn.execute(
                    sql.SQL("SELECT count(*) FROM {}.{}").format(
                        sql.Identifier(schema), sql.Identifier(table)
                    )
                ).fetchone()[0],
            )
            for schema, table in tables
        ]


@pytest.mark.slow
def test_with_database_url_on_a_live_database_nothing_a_test_sends_lands_there(
    pytester: pytest.Pytester, fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #22 item 8: a developer's database with a live ``commandbus`` schema (a worker
    would run what lands there) named by ``DATABASE_URL``: the tests' commands, sent with
    the defaults, stay in their own databases, which are gone after the run."""
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(migration_sql().encode(), prepare=False)
    before = _contents(fresh_database)
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    source = USER_TESTS.replace("HERE", repr(str(pytester.path)))
    source += f"\n\nQUICK_START = {quick_starts()['Quick start (async)']!r}\n"
    result = _run_user_tests(pytester, source, "-p", "no:asyncio")

    result.assert_outcomes(passed=4)
    assert _contents(fresh_database) == before  # not one row, table or schema more
    names = (pytester.path / "databases.txt").read_text().split()
    template = {name for name in names if "template" in name}
    tests = [name for name in names if "template" not in name]
    assert len(template) == 1 and len(set(tests)) == 4
    assert _databases(fresh_database, [*template, *tests]) == []  # all dropped


MODE_TESTS = """
import pytest

MARK


async def test_pool_and_bus_run_on_the_tests_loop(commandbus_pool, commandbus_bus):
    async with commandbus_pool.connection() as conn:
        await (await conn.execute("SELECT 1")).fetchone()
    assert await commandbus_bus.query_commands() == []


async def test_a_second_test_on_the_same_loop_rules(commandbus_pool):
    async with commandbus_pool.connection() as conn:
        await conn.execute("SELECT 1")
"""

#: What a pytest-asyncio user's configuration sets (unset, pytest-asyncio warns).
FIXTURE_LOOP = ["-o", "asyncio_default_fixture_loop_scope=function"]
MODES = {
    # name: (the file's marks, pytest's arguments, outcomes)
    "pytest-asyncio strict": (
        "pytestmark = pytest.mark.asyncio",
        ["--asyncio-mode=strict", *FIXTURE_LOOP],
        {"passed": 2},
    ),
    "pytest-asyncio strict, module loop": (
        'pytestmark = pytest.mark.asyncio(loop_scope="module")',
        ["--asyncio-mode=strict", *FIXTURE_LOOP],
        {"passed": 2},
    ),
    "pytest-asyncio auto": (
        "",
        ["--asyncio-mode=auto", *FIXTURE_LOOP],
        {"passed": 2},
    ),
    "anyio, asyncio only": (
        "pytestmark = pytest.mark.anyio",
        ["-p", "no:asyncio"],
        {"passed": 2, "deselected": 2},
    ),
    "anyio auto mode": (
        "",
        ["-p", "no:asyncio", "-o", "anyio_mode=auto"],
        {"passed": 2, "deselected": 2},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_the_async_fixtures_work_under_each_runner(
    pytester: pytest.Pytester, server_url: str, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Issue #22 item 9: pytest-asyncio's strict and auto modes, and anyio's plugin
    (asyncio only: the trio variants of anyio's default backend are deselected)."""
    marks, args, outcomes = MODES[mode]
    monkeypatch.setenv("DATABASE_URL", server_url)
    result = _run_user_tests(
        pytester, MODE_TESTS.replace("MARK", marks), "-W", "error", "-rA", *args
    )
    result.assert_outcomes(**outcomes)
    assert "trio" not in result.stdout.str()


@pytest.mark.slow
def test_an_explicit_trio_backend_fails_with_a_clear_message(
    pytester: pytest.Pytester, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", server_url)
    marks = (
        'pytestmark = pytest.mark.anyio\n\n@pytest.fixture\ndef anyio_backend():\n    return "trio"'
    )
    result = _run_user_tests(pytester, MODE_TESTS.replace("MARK", marks), "-p", "no:asyncio")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*commandbus_pool runs on asyncio only*"])


@pytest.mark.slow
def test_the_plugin_is_registered_and_lists_its_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess(
        "--fixtures", "-p", "no:randomly", "-p", "no:asyncio", "-p", "no:django"
    )
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


async def test_this_repositorys_fixtures_are_the_plugins(
    bus: CommandBus,
    commandbus_bus: CommandBus,
    database_url: str,
    commandbus_database_url: str,
    schema: str,
    commandbus_schema: str,
) -> None:
    """One database per test for both: the repository's tests run on the shipped plugin,
    with a schema that is not the default (code that forgets its schema fails here)."""
    assert (database_url, schema) == (commandbus_database_url, commandbus_schema)
    assert schema != "commandbus"
    await commandbus_bus.send(DOMAIN, "Ship", uuid.uuid4(), {})
    assert len(await bus.query_commands()) == 1


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
