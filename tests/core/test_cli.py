"""The ``commandbus`` operator CLI, run as a subprocess against the real database.

What an operator relies on: ``--json`` output parses back, actions land in the audit
trail with the operator's name, bad input and an unreachable database end with exit 2 or
1 and one line on stderr (no traceback), and ``commandbus worker`` processes commands
and stops cleanly on SIGTERM. Independent invocations run concurrently: each one pays
for an interpreter start.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import signal
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BatchCommand,
    CommandBus,
    CommandStatus,
    HandlerRegistry,
    PermanentCommandError,
    ProcessStatus,
)
from commandbus._sql import migration_files
from commandbus.cli import main
from core._sagas import SAGA_DOMAIN, saga_env
from core.helpers import make_worker, running, wait_for_status

pytestmark = pytest.mark.anyio  # the conftest marks async tests too late for parametrize

DOMAIN = "cli"
#: ``$USER`` of every run: the default ``--operator``.
USER = "night-shift"


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.status == 0, self.stderr
        return json.loads(self.stdout)

    def one_line_error(self, status: int) -> str:
        """Assert the run failed with ``status`` and one line on stderr; return that line."""
        assert self.status == status, (self.status, self.stdout, self.stderr)
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("commandbus: error: "), lines[0]
        assert self.stdout == ""
        return lines[0]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(USER=USER, **extra)
    return env


async def run_cli(*args: str, **env: str) -> Result:
    done = await anyio.run_process(
        [sys.executable, "-m", "commandbus.cli", *args], check=False, env=_env(**env)
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


async def run_many(*calls: tuple[str, ...]) -> list[Result]:
    """Run several CLI invocations at once; results in order."""
    results: list[Result | None] = [None] * len(calls)

    async def one(index: int, args: tuple[str, ...]) -> None:
        results[index] = await run_cli(*args)

    async with anyio.create_task_group() as tg:
        for index, args in enumerate(calls):
            tg.start_soon(one, index, args)
    return [r for r in results if r is not None]


def db(database_url: str, schema: str, *args: str) -> tuple[str, ...]:
    """Arguments of an invocation on the test database and schema."""
    return ("--dsn", database_url, "--schema", schema, *args)


def test_console_script_is_declared() -> None:
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="commandbus")
    assert script.value == "commandbus.cli:main"
    assert script.load() is main


async def test_migrate_creates_the_schema(database_url: str, schema: str) -> None:
    first = (await run_cli(*db(database_url, schema, "migrate", "--json"))).json()
    shipped = [version for version, _, _ in migration_files()]
    assert first == {"schema": schema, "applied": shipped}
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT to_regclass(%s)", [f"{schema}.commands"]).fetchone()
    assert found is not None and found[0] is not None


async def test_print_sql_renders_the_schema_without_a_database() -> None:
    result = await run_cli("migrate", "--print-sql", "--schema", "elsewhere")
    assert result.status == 0, result.stderr
    assert 'CREATE TABLE "elsewhere".commands' in result.stdout
    assert "{schema}" not in result.stdout


async def test_commands_list_and_show_parse_back_as_json(
    database_url: str, schema: str, bus: CommandBus
) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    for index, command_id in enumerate(ids):
        await bus.send(DOMAIN, "Ship" if index else "Pay", command_id, {"n": index})

    shipped, shown, human = await run_many(
        db(database_url, schema, "--json", "commands", "list", "--type", "Ship"),
        db(database_url, schema, "commands", "show", DOMAIN, str(ids[1]), "--json"),
        db(database_url, schema, "commands", "show", DOMAIN, str(ids[1])),
    )

    assert {c["command_id"] for c in shipped.json()} == {str(i) for i in ids[1:]}
    detail = shown.json()
    assert detail["command"]["command_id"] == str(ids[1])
    assert detail["command"]["status"] == "PENDING"
    assert detail["command"]["data"] == {"n": 1}
    assert [e["event_type"] for e in detail["audit_trail"]] == ["SENT"]
    assert human.status == 0 and str(ids[1]) in human.stdout
    assert "audit trail" in human.stdout and "SENT" in human.stdout


async def test_operator_actions_on_the_troubleshooting_queue_are_audited_with_their_operator(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    retry_id, cancel_id, complete_id, left_id = await _park(pool, schema, bus, 4)
    pending_id = uuid.uuid4()
    await bus.send(DOMAIN, "Pay", pending_id, {})
    on = functools.partial(db, database_url, schema, "tsq")

    retry, cancel, complete, refused = await run_many(
        on("retry", DOMAIN, str(retry_id)),  # --operator defaults to $USER
        on("cancel", DOMAIN, str(cancel_id), "--reason", "dup", "--operator", "alice"),
        on("complete", DOMAIN, str(complete_id), "--result", '{"refund": 5}', "--operator", "bob"),
        on("retry", DOMAIN, str(pending_id)),
    )
    listed = (await run_cli(*on("list", "--json"))).json()

    assert [r.status for r in (retry, cancel, complete)] == [0, 0, 0]
    assert "not in the troubleshooting queue" in refused.one_line_error(2)
    assert [(i["command_id"], i["last_error_code"]) for i in listed] == [(str(left_id), "BROKEN")]
    expected = {
        retry_id: (CommandStatus.PENDING, "OPERATOR_RETRY", USER),
        cancel_id: (CommandStatus.CANCELED, "OPERATOR_CANCEL", "alice"),
        complete_id: (CommandStatus.COMPLETED, "OPERATOR_COMPLETE", "bob"),
    }
    for command_id, (status, event_type, operator) in expected.items():
        command = await bus.get_command(DOMAIN, command_id)
        assert command is not None and command.status == status
        last = (await bus.get_audit_trail(command_id))[-1]
        assert (last.event_type, last.details.get("operator")) == (event_type, operator)
    completed = await bus.get_command(DOMAIN, complete_id)
    assert completed is not None and completed.result == {"refund": 5}


async def test_stats_count_commands_by_domain_and_status_and_the_queue_per_domain(
    database_url: str, schema: str, bus: CommandBus
) -> None:
    for domain in ("alpha", "alpha", "beta"):
        await bus.send(domain, "Ship", uuid.uuid4(), {})

    as_json, human = await run_many(
        db(database_url, schema, "stats", "--json"), db(database_url, schema, "stats")
    )

    stats = as_json.json()
    by_domain = {row["domain"]: row for row in stats["commands"]}
    assert by_domain["alpha"]["PENDING"] == 2 and by_domain["alpha"]["total"] == 2
    assert by_domain["beta"]["PENDING"] == 1 and by_domain["beta"]["COMPLETED"] == 0
    queue = {row["domain"]: row for row in stats["queue"]}
    assert (queue["alpha"]["depth"], queue["alpha"]["ready"]) == (2, 2)
    assert queue["beta"]["oldest_pending_age"] >= 0
    assert human.status == 0 and "alpha" in human.stdout and "OLDEST PENDING" in human.stdout


async def test_batches_and_processes_list_and_show(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    batch = await bus.create_batch(
        DOMAIN, [BatchCommand("Ship", uuid.uuid4(), {}) for _ in range(2)], name="nightly"
    )
    async with saga_env(pool, schema) as env:
        process_id = await env.start_order("o-7")
        await env.wait_status(process_id, ProcessStatus.COMPLETED)

    batches, batch_detail, processes, process_detail = await run_many(
        db(database_url, schema, "batches", "list", "--domain", DOMAIN, "--json"),
        db(database_url, schema, "batches", "show", DOMAIN, str(batch.batch_id), "--json"),
        db(database_url, schema, "processes", "list", "--domain", SAGA_DOMAIN, "--json"),
        db(database_url, schema, "processes", "show", str(process_id), "--json"),
    )

    assert [(b["batch_id"], b["name"], b["total"]) for b in batches.json()] == [
        (str(batch.batch_id), "nightly", 2)
    ]
    shown = batch_detail.json()
    assert shown["batch"]["status"] == "PENDING"
    assert {c["command_id"] for c in shown["commands"]} == {
        str(r.command_id) for r in batch.results
    }
    assert [(p["process_id"], p["status"]) for p in processes.json()] == [
        (str(process_id), "COMPLETED")
    ]
    trail = process_detail.json()["audit_trail"]
    assert [(e["step"], e["reply_outcome"]) for e in trail] == [
        ("RESERVE", "SUCCESS"),
        ("CHARGE", "SUCCESS"),
        ("SHIP", "SUCCESS"),
    ]


async def test_bad_input_exits_2_with_one_line_and_no_traceback(
    database_url: str, schema: str, pool: AsyncConnectionPool
) -> None:
    bad_uuid, bad_json, unknown, bad_domain, no_dsn = await run_many(
        db(database_url, schema, "commands", "show", DOMAIN, "not-a-uuid"),
        db(database_url, schema, "tsq", "complete", DOMAIN, str(uuid.uuid4()), "--result", "{"),
        db(database_url, schema, "commands", "show", DOMAIN, str(uuid.uuid4())),
        db(database_url, schema, "commands", "list", "--domain", "no spaces allowed"),
        ("commands", "list"),
    )
    assert "not a valid UUID" in bad_uuid.one_line_error(2)
    assert "--result" in bad_json.one_line_error(2)
    assert "no command" in unknown.one_line_error(2)
    assert "domain" in bad_domain.one_line_error(2)
    assert "DATABASE_URL" in no_dsn.one_line_error(2)


async def test_unreachable_database_exits_1_with_one_line() -> None:
    started = time.monotonic()
    result = await run_cli("--dsn", "postgresql://127.0.0.1:1/x", "commands", "list")
    assert "cannot use the database" in result.one_line_error(1)
    assert time.monotonic() - started < 15  # a refused connection fails fast, no retries


HANDLERS = """
    from commandbus import HandlerRegistry

    registry = HandlerRegistry()

    @registry.handler("cli", "Echo")
    async def echo(command, ctx):
        return {"echo": command.data["n"]}

    @registry.handler("cli", "Shout")
    def shout(command, ctx):  # plain def: runs in the worker's thread pool
        return {"shout": str(command.data["n"]) + "!"}
"""


@pytest.mark.parametrize("mode", [[], ["--sync"]], ids=["async", "sync"])
async def test_worker_processes_commands_and_stops_cleanly_on_sigterm(
    database_url: str,
    schema: str,
    pool: AsyncConnectionPool,
    bus: CommandBus,
    tmp_path: Path,
    mode: list[str],
) -> None:
    (tmp_path / "cli_handlers.py").write_text(textwrap.dedent(HANDLERS))
    ids = [uuid.uuid4() for _ in range(6)]
    for n, command_id in enumerate(ids):
        await bus.send(DOMAIN, "Echo" if n % 2 else "Shout", command_id, {"n": n})

    command = [sys.executable, "-m", "commandbus.cli", *db(database_url, schema)]
    command += ["worker", "cli_handlers:registry", "--domain", DOMAIN, "--concurrency", "3"]
    command += mode
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "worker.log"
    with log.open("wb") as stderr:
        process = await anyio.open_process(command, env=env, stdout=None, stderr=stderr)
    async with process:
        try:
            for command_id in ids:
                await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED, timeout=20)
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                status = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()

    assert status == 0, log.read_text()
    assert "stopped" in log.read_text()
    results = [await bus.get_command(DOMAIN, command_id) for command_id in ids]
    assert [r.result for r in results if r is not None] == [
        {"shout": "0!"},
        {"echo": 1},
        {"shout": "2!"},
        {"echo": 3},
        {"shout": "4!"},
        {"echo": 5},
    ]


async def test_worker_refuses_a_registry_without_handlers_for_the_domain(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    (tmp_path / "cli_handlers.py").write_text(textwrap.dedent(HANDLERS))
    result = await run_cli(
        *db(database_url, schema, "worker", "cli_handlers:registry", "--domain", "other"),
        PYTHONPATH=str(tmp_path),
    )
    assert "no handler for domain 'other'" in result.one_line_error(2)


async def _park(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, count: int
) -> list[uuid.UUID]:
    """Send ``count`` commands whose handler fails permanently; wait until they are parked."""
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Pay")
    async def broken(command: Any, ctx: Any) -> None:
        raise PermanentCommandError("BROKEN", "cannot pay")

    ids = [uuid.uuid4() for _ in range(count)]
    for command_id in ids:
        await bus.send(DOMAIN, "Pay", command_id, {})
    async with running(make_worker(pool, schema, registry, domain=DOMAIN)):
        for command_id in ids:
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
    return ids


async def test_python_dash_m_commandbus_runs_the_cli() -> None:
    done = await anyio.run_process(
        [sys.executable, "-m", "commandbus", "--help"], check=False, env=_env()
    )
    assert done.returncode == 0, done.stderr.decode()
    assert "migrate" in done.stdout.decode()


async def test_worker_help_is_plain_text() -> None:
    result = await run_cli("worker", "--help")
    assert result.status == 0, result.stderr
    assert "--stop-timeout" in result.stdout and "``" not in result.stdout
