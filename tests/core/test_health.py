"""check_health: one check per line, healthy on a working set-up, and each threshold,
an unmigrated schema and an unreachable database fail the right check."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    HealthReport,
    PermanentCommandError,
    ValidationError,
    _sql,
    check_health,
    list_workers,
    pause_domain,
)
from commandbus._sql import migration_files
from commandbus.migrations import _PRELUDE
from core.helpers import DOMAIN, execute, make_worker, running, wait_for_status, wait_until

ALL = ["database", "migrations", "paused", "pending", "troubleshooting"]
WITH_WORKERS = ["database", "migrations", "workers", "paused", "pending", "troubleshooting"]


def _by_name(report: HealthReport) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.ok, c.detail) for c in report.checks}


def _failing(report: HealthReport) -> list[str]:
    return [c.name for c in report.failed()]


@pytest.fixture
async def bare_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool on a database where the test's schema was never migrated."""
    async with AsyncConnectionPool(database_url, min_size=1, max_size=4, open=False) as p:
        yield p


async def _registered(pool: AsyncConnectionPool, schema: str) -> bool:
    return bool(await list_workers(pool, schema=schema, domain=DOMAIN))


async def test_a_healthy_setup_passes_every_check(pool: AsyncConnectionPool, schema: str) -> None:
    async with running(make_worker(pool, schema, HandlerRegistry())):
        await wait_until(lambda: _registered(pool, schema), what="the worker to register")
        report = await check_health(
            pool, schema=schema, domain=DOMAIN, max_pending_age=60, max_troubleshooting=0
        )

    assert report.ok, report
    assert [c.name for c in report.checks] == WITH_WORKERS
    checks = _by_name(report)
    assert "reachable (PostgreSQL" in checks["database"][1]
    assert f"all {len(migration_files())} migrations" in checks["migrations"][1]
    assert "1 live worker for domain 'orders'" in checks["workers"][1]
    assert "no command waiting" in checks["pending"][1]
    assert checks["paused"] == (True, "no paused domain in domain 'orders'")
    assert checks["troubleshooting"][1].startswith("0 commands")


async def test_without_a_domain_there_is_no_worker_check_and_no_limit_fails(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    await bus.send("anywhere", "Job", uuid.uuid4(), {})
    await execute(pool, schema, "UPDATE {schema}.commands SET vt = now() - interval '1 day'")

    report = await check_health(pool, schema=schema)

    assert report.ok and [c.name for c in report.checks] == ALL
    assert "(no limit set)" in _by_name(report)["pending"][1]


async def test_a_command_waiting_longer_than_max_pending_age_fails_the_pending_check(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    late, delayed = uuid.uuid4(), uuid.uuid4()
    await bus.send(DOMAIN, "Job", late, {})
    await bus.send(DOMAIN, "Job", delayed, {}, delay=3600)  # not due: never counts
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET vt = now() - interval '120 seconds' WHERE command_id = %s",
        [late],
    )

    failing = await check_health(pool, schema=schema, domain=DOMAIN, max_pending_age=60)
    lenient = await check_health(pool, schema=schema, max_pending_age=600)
    elsewhere = await check_health(pool, schema=schema, domain="other", max_pending_age=60)

    assert _failing(failing) == ["workers", "pending"]  # no worker is running either
    ok, detail = _by_name(failing)["pending"]
    assert not ok
    assert re.fullmatch(
        r"1 command ready in domain 'orders', the oldest waiting 12\d\.\d s \(limit 60 s\)",
        detail,
    ), detail
    assert lenient.ok, lenient
    assert _by_name(elsewhere)["pending"][0]


async def test_ready_commands_of_a_paused_domain_are_reported_paused_not_failed(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    for _ in range(2):
        await bus.send("reports", "Build", uuid.uuid4(), {})
    await bus.send(DOMAIN, "Job", uuid.uuid4(), {})
    await execute(pool, schema, "UPDATE {schema}.commands SET vt = now() - interval '1 hour'")
    await pause_domain(pool, "reports", operator="alice", reason="db upgrade", schema=schema)

    everywhere = await check_health(pool, schema=schema, max_pending_age=60)
    reports = await check_health(pool, schema=schema, domain="reports", max_pending_age=60)

    assert _failing(everywhere) == ["pending"]  # the unpaused domain's command is late
    assert _by_name(everywhere)["paused"] == (
        True,
        "paused: 'reports' by alice (db upgrade); resume with: commandbus resume DOMAIN",
    )
    pending = _by_name(everywhere)["pending"][1]
    assert pending.startswith("1 command ready in all domains")
    assert pending.endswith("; 2 ready in paused domains wait for a resume, not for a worker")
    assert _failing(reports) == ["workers"]  # paused is no failure; no worker runs though
    assert _by_name(reports)["paused"][1].startswith("paused: 'reports' by alice")
    assert _by_name(reports)["pending"] == (
        True,
        "no command waiting for a worker in domain 'reports' (limit 60 s); "
        "2 ready in paused domains wait for a resume, not for a worker",
    )


async def test_more_parked_commands_than_max_troubleshooting_fail_that_check(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Pay")
    async def broken(command: Command, ctx: HandlerContext) -> None:
        raise PermanentCommandError("BROKEN", "cannot pay")

    ids = [uuid.uuid4() for _ in range(2)]
    async with running(make_worker(pool, schema, registry)):
        for command_id in ids:
            await bus.send(DOMAIN, "Pay", command_id, {})
        for command_id in ids:
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
        await wait_until(lambda: _registered(pool, schema), what="the worker to register")
        over = await check_health(pool, schema=schema, domain=DOMAIN, max_troubleshooting=1)
        at = await check_health(pool, schema=schema, domain=DOMAIN, max_troubleshooting=2)

    assert _failing(over) == ["troubleshooting"]
    assert _by_name(over)["troubleshooting"][1] == (
        "2 commands in the troubleshooting queue of domain 'orders' (limit 1)"
    )
    assert at.ok, at


async def test_no_worker_or_only_a_stale_one_fails_the_workers_check(
    pool: AsyncConnectionPool, schema: str
) -> None:
    nobody = await check_health(pool, schema=schema, domain=DOMAIN)
    assert _failing(nobody) == ["workers"]
    assert _by_name(nobody)["workers"][1] == "no worker registered for domain 'orders'"

    # What a worker killed hard leaves behind: its row, with a heartbeat long past.
    await execute(
        pool,
        schema,
        """
        INSERT INTO {schema}.workers (id, kind, host, pid, domain, concurrency, version,
                                      heartbeat_interval, heartbeat_at)
        VALUES ('h:1:1', 'worker', 'h', 1, %s, 4, '0.1.0', 10, now() - interval '5 minutes')
        """,
        [DOMAIN],
    )
    stale = await check_health(pool, schema=schema, domain=DOMAIN)
    assert _failing(stale) == ["workers"]
    assert (
        "no live worker for domain 'orders': 1 stale row, last heartbeat 300 s ago"
        in (_by_name(stale)["workers"][1])
    )

    # A router reading a queue named like the domain is not a worker of it.
    await execute(pool, schema, "UPDATE {schema}.workers SET kind = 'router', heartbeat_at = now()")
    assert _failing(await check_health(pool, schema=schema, domain=DOMAIN)) == ["workers"]


async def test_an_unmigrated_schema_fails_the_migrations_check_and_stops_there(
    bare_pool: AsyncConnectionPool, schema: str
) -> None:
    report = await check_health(bare_pool, schema=schema, domain=DOMAIN, max_troubleshooting=0)

    assert [c.name for c in report.checks] == ["database", "migrations"]
    assert _failing(report) == ["migrations"]
    assert _by_name(report)["migrations"][1] == (
        f"schema {schema!r} is not migrated (run: commandbus migrate --schema {schema})"
    )


async def test_a_schema_behind_by_one_migration_names_what_it_lacks(
    bare_pool: AsyncConnectionPool, schema: str
) -> None:
    async with bare_pool.connection() as conn:
        await conn.execute(_sql.render(_PRELUDE, schema), prepare=False)
        for version, name, template in _sql.migration_files()[:-1]:
            await conn.execute(_sql.render(template, schema), prepare=False)
            await conn.execute(
                sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
                    sql.Identifier(schema, "schema_version")
                ),
                [version, name],
            )

    report = await check_health(bare_pool, schema=schema)

    latest = _sql.migration_files()[-1][0]
    assert _failing(report) == ["migrations"]
    assert f"lacks migrations [{latest}]" in _by_name(report)["migrations"][1]


async def test_an_unreachable_database_fails_the_database_check_within_the_timeout() -> None:
    async with AsyncConnectionPool(
        "postgresql://127.0.0.1:1/nothing?connect_timeout=1", min_size=1, open=False
    ) as nowhere:
        started = time.monotonic()
        report = await check_health(nowhere, timeout=1)
        elapsed = time.monotonic() - started

    assert [(c.name, c.ok) for c in report.checks] == [("database", False)]
    assert report.checks[0].detail.startswith("unreachable: ")
    assert elapsed < 5


async def test_check_health_refuses_bad_limits(pool: AsyncConnectionPool, schema: str) -> None:
    bad: list[dict[str, object]] = [
        {"max_pending_age": -1},
        {"max_pending_age": float("nan")},
        {"max_troubleshooting": -1},
        {"max_troubleshooting": 1.5},
        {"max_troubleshooting": True},
        {"domain": "no spaces"},
        {"timeout": 0},
    ]
    for options in bad:
        with pytest.raises(ValidationError):
            await check_health(pool, schema=schema, **options)  # type: ignore[arg-type]
    assert (await asyncio.wait_for(check_health(pool, schema=schema), 10)).ok
