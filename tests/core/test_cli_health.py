"""``commandbus workers`` and ``commandbus health``, run as subprocesses like an operator or
a Kubernetes probe would: tables and ``--json``, exit 0 when healthy and 1 with the
failing check's line otherwise (an unreachable database included, without a traceback)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, HandlerRegistry, list_workers, pause_domain
from core.helpers import execute, make_worker, running, wait_until
from core.test_cli import Result, db, run_cli, run_many

pytestmark = pytest.mark.anyio

DOMAIN = "cli"
LIMITS = ("--max-pending-age", "30", "--max-troubleshooting", "0")


def _lines(result: Result, status: int) -> dict[str, str]:
    """Assert the exit status and a quiet stderr; the stdout lines by check name."""
    assert result.status == status, (result.status, result.stdout, result.stderr)
    assert result.stderr == ""
    lines = {}
    for line in result.stdout.splitlines():
        state, rest = line.split(None, 1)
        name, detail = rest.split(": ", 1)
        assert state in ("ok", "FAIL"), line
        lines[name] = f"{state} {detail}"
    return lines


async def _registered(pool: AsyncConnectionPool, schema: str) -> bool:
    return bool(await list_workers(pool, schema=schema, domain=DOMAIN))


async def test_workers_lists_the_registry_as_a_table_and_as_json(
    database_url: str, schema: str, pool: AsyncConnectionPool
) -> None:
    empty = await run_cli(*db(database_url, schema, "workers"))
    assert empty.status == 0 and "no worker or router is registered" in empty.stdout

    worker = make_worker(pool, schema, HandlerRegistry(), domain=DOMAIN, concurrency=3)
    async with running(worker):
        await wait_until(lambda: _registered(pool, schema), what="the worker to register")
        as_json, human, other = await run_many(
            db(database_url, schema, "workers", "--json"),
            db(database_url, schema, "workers", "--domain", DOMAIN),
            db(database_url, schema, "workers", "--kind", "router"),
        )

    (row,) = as_json.json()
    assert (row["id"], row["kind"], row["domain"]) == (worker.name, "worker", DOMAIN)
    assert (row["concurrency"], row["in_flight"], row["stale"]) == (3, 0, False)
    assert row["version"] and row["started_at"] and row["heartbeat_age"] >= 0
    assert human.status == 0, human.stderr
    assert "HEARTBEAT (s ago)" in human.stdout and worker.name in human.stdout
    assert "live" in human.stdout
    assert other.status == 0 and "no worker or router" in other.stdout


async def test_health_exits_0_with_one_ok_line_per_check_on_a_healthy_setup(
    database_url: str, schema: str, pool: AsyncConnectionPool
) -> None:
    async with running(make_worker(pool, schema, HandlerRegistry(), domain=DOMAIN)):
        await wait_until(lambda: _registered(pool, schema), what="the worker to register")
        human, as_json = await run_many(
            db(database_url, schema, "health", "--domain", DOMAIN, *LIMITS),
            db(database_url, schema, "health", "--json"),
        )

    lines = _lines(human, 0)
    assert list(lines) == [
        "database",
        "migrations",
        "workers",
        "paused",
        "pending",
        "troubleshooting",
    ]
    assert all(line.startswith("ok ") for line in lines.values()), lines
    report = as_json.json()
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "database",
        "migrations",
        "paused",
        "pending",
        "troubleshooting",
    ]


async def test_health_exits_1_with_the_failing_line_for_each_threshold(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    await bus.send(DOMAIN, "Job", uuid.uuid4(), {})
    await execute(pool, schema, "UPDATE {schema}.commands SET vt = now() - interval '90 seconds'")
    await bus.send(DOMAIN, "Job", parked := uuid.uuid4(), {})
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET status = 'IN_TROUBLESHOOTING_QUEUE' WHERE command_id = %s",
        [parked],
    )

    pending, troubleshooting, no_worker, as_json = await run_many(
        db(database_url, schema, "health", "--max-pending-age", "60"),
        db(database_url, schema, "health", "--max-troubleshooting", "0"),
        db(database_url, schema, "health", "--domain", DOMAIN),
        db(database_url, schema, "health", "--json", "--max-pending-age", "60"),
    )

    lines = _lines(pending, 1)
    assert lines["pending"].startswith("FAIL 1 command ready in all domains, the oldest waiting")
    assert lines["pending"].endswith("(limit 60 s)")
    assert [n for n, line in lines.items() if line.startswith("FAIL")] == ["pending"]

    lines = _lines(troubleshooting, 1)
    assert lines["troubleshooting"] == (
        "FAIL 1 command in the troubleshooting queue of all domains (limit 0)"
    )
    assert [n for n, line in lines.items() if line.startswith("FAIL")] == ["troubleshooting"]

    lines = _lines(no_worker, 1)
    assert lines["workers"] == "FAIL no worker registered for domain 'cli'"

    assert as_json.status == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"] if not c["ok"]] == ["pending"]


async def test_health_exits_1_on_an_unmigrated_schema(database_url: str) -> None:
    never = f"never_{uuid.uuid4().hex[:8]}"
    lines = _lines(await run_cli(*db(database_url, never, "health")), 1)
    assert list(lines) == ["database", "migrations"]
    assert lines["migrations"] == (
        f"FAIL schema '{never}' is not migrated (run: commandbus migrate --schema {never})"
    )


async def test_health_exits_1_with_one_line_on_an_unreachable_database() -> None:
    started = time.monotonic()
    result = await run_cli("--dsn", "postgresql://127.0.0.1:1/x", "health")
    lines = _lines(result, 1)
    assert list(lines) == ["database"]
    assert lines["database"].startswith("FAIL unreachable: ")
    assert "Traceback" not in result.stdout
    assert time.monotonic() - started < 15


async def test_health_refuses_bad_limits_with_exit_2(database_url: str, schema: str) -> None:
    negative, not_a_number, bad_domain = await run_many(
        db(database_url, schema, "health", "--max-pending-age", "-1"),
        db(database_url, schema, "health", "--max-troubleshooting", "many"),
        db(database_url, schema, "health", "--domain", "no spaces"),
    )
    assert "--max-pending-age" in negative.one_line_error(2)
    assert "--max-troubleshooting" in not_a_number.one_line_error(2)
    assert "domain" in bad_domain.one_line_error(2)


async def test_a_paused_domain_shows_in_health_and_stats_and_its_ready_commands_do_not_fail(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    for _ in range(2):
        await bus.send("reports", "Build", uuid.uuid4(), {})
    await execute(pool, schema, "UPDATE {schema}.commands SET vt = now() - interval '1 hour'")
    await pause_domain(pool, "reports", operator="alice", reason="db upgrade", schema=schema)
    await pause_domain(pool, "idle", operator="bob", reason="no work today", schema=schema)

    health, stats, stats_json = await run_many(
        db(database_url, schema, "health", "--max-pending-age", "60"),
        db(database_url, schema, "stats"),
        db(database_url, schema, "stats", "--json"),
    )

    lines = _lines(health, 0)
    assert lines["paused"].startswith("ok paused: 'idle' by bob (no work today); 'reports'")
    assert lines["pending"] == (
        "ok no command waiting for a worker in all domains (limit 60 s); "
        "2 ready in paused domains wait for a resume, not for a worker"
    )
    queue = stats.stdout.split("\nqueue:\n", 1)[1].split("\n\n", 1)[0]
    (reports,) = [line for line in queue.splitlines() if line.startswith("reports ")]
    assert reports.split()[-1] == "PAUSED"
    assert "resume with 'commandbus resume DOMAIN'" in stats.stdout
    assert "no work today" in stats.stdout  # a paused domain without commands shows too
    as_json = stats_json.json()
    assert [(q["domain"], q["ready"], q["paused"]) for q in as_json["queue"]] == [
        ("reports", 2, True)
    ]
    assert [(p["domain"], p["operator"]) for p in as_json["paused"]] == [
        ("idle", "bob"),
        ("reports", "alice"),
    ]
