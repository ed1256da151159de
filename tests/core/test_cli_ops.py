"""``commandbus prune``, ``pause``/``resume``/``paused`` and ``schedules``, run as
subprocesses against the real database."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, Schedule, Scheduler
from core.helpers import execute
from core.test_cli import db, run_cli, run_many

pytestmark = pytest.mark.anyio

DOMAIN = "cli"


async def test_prune_dry_run_counts_and_prune_deletes(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    for command_id in ids:
        await bus.send(DOMAIN, "Work", command_id, {})
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET status = 'COMPLETED', "
        "updated_at = now() - interval '3 days' WHERE command_id = ANY(%s)",
        [ids[:2]],
    )
    (dry, kept) = await run_many(
        db(database_url, schema, "--json", "prune", "--older-than", "2d", "--dry-run"),
        db(database_url, schema, "--json", "prune", "--older-than", "4d"),
    )
    assert dry.json()["commands"] == 2 and dry.json()["dry_run"] is True
    assert kept.json()["commands"] == 0
    (done,) = await run_many(db(database_url, schema, "prune", "--older-than", "1d12h"))
    assert done.status == 0, done.stderr
    assert ["commands", "deleted", "2"] in [line.split() for line in done.stdout.splitlines()]
    rows = await execute(pool, schema, "SELECT command_id FROM {schema}.commands")
    assert [r[0] for r in rows] == [ids[2]]


async def test_prune_refuses_a_bad_age(database_url: str, schema: str) -> None:
    bad, zero = await run_many(
        db(database_url, schema, "prune", "--older-than", "7 days"),
        db(database_url, schema, "prune", "--older-than", "0d"),
    )
    assert "not a duration" in bad.one_line_error(2)
    assert "longer than 0" in zero.one_line_error(2)


async def test_schedules_lists_the_served_schedules_with_their_next_tick(
    database_url: str, schema: str, pool: AsyncConnectionPool
) -> None:
    nightly = Schedule(
        "nightly", domain=DOMAIN, command_type="Report", cron="0 3 * * *", tz="Europe/Paris"
    )
    await Scheduler(pool, [nightly], schema=schema).run_due()
    listed, empty = await run_many(
        db(database_url, schema, "--json", "schedules"),
        db(database_url, f"{schema}_none", "schedules"),
    )
    (row,) = listed.json()
    assert row["name"] == "nightly" and row["spec"] == "cron 0 3 * * * Europe/Paris"
    assert row["next_tick"] > row["last_tick"]
    assert empty.status == 1 and "migrated" in empty.stderr
    (text,) = await run_many(db(database_url, schema, "schedules"))
    assert "nightly" in text.stdout and "Report" in text.stdout


async def test_schedules_shows_no_last_tick_until_a_tick_has_sent_a_command(
    database_url: str, schema: str, pool: AsyncConnectionPool
) -> None:
    clock = [datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)]
    minutely = Schedule("minutely", domain=DOMAIN, command_type="Report", every=60)
    scheduler = Scheduler(pool, [minutely], schema=schema, now=lambda: clock[0])
    assert await scheduler.run_due() == []  # served from now on: 12:00 is not sent
    (fresh,) = await run_many(db(database_url, schema, "schedules"))
    clock[0] += timedelta(minutes=1)
    assert len(await scheduler.run_due()) == 1  # 12:01 is
    (sent,) = await run_many(db(database_url, schema, "schedules"))

    def last_sent(result: Any) -> str:
        assert result.status == 0, result.stderr
        header, _, row = result.stdout.splitlines()
        start = header.index("LAST SENT")
        return str(row[start : header.index("NEXT TICK")].strip())

    assert last_sent(fresh) == "-"
    assert last_sent(sent) == "2026-03-01 12:01:00Z"


async def test_worker_retry_flags_are_validated(database_url: str, schema: str) -> None:
    app = "nowhere:registry"
    backoff, timeout, attempts = await run_many(
        db(database_url, schema, "worker", app, "--domain", DOMAIN, "--backoff", "10,x"),
        db(database_url, schema, "worker", app, "--domain", DOMAIN, "--visibility-timeout", "0"),
        db(database_url, schema, "worker", app, "--domain", DOMAIN, "--max-attempts", "0"),
    )
    assert "--backoff" in backoff.one_line_error(2)
    assert "--visibility-timeout" in timeout.one_line_error(2)
    assert "--max-attempts" in attempts.one_line_error(2)


def test_worker_retry_flags_build_the_policy() -> None:
    from commandbus import RetryPolicy
    from commandbus.cli import build_parser
    from commandbus.cli.worker import _retry_policy

    parse = build_parser().parse_args
    args = parse(["worker", "a:b", "--domain", "d", "--backoff", "1,2.5", "--max-attempts", "4"])
    assert _retry_policy(args) == RetryPolicy(max_attempts=4, backoff=(1, 2.5))
    assert args.visibility_timeout == 30.0
    assert _retry_policy(parse(["worker", "a:b", "--domain", "d"])) is None


def test_worker_retention_and_schedules_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from commandbus import HandlerRegistry
    from commandbus.cli import UsageError, build_parser
    from commandbus.cli.worker import _worker

    (tmp_path / "shop_jobs.py").write_text(
        "from commandbus import Schedule\n"
        "SCHEDULES = [Schedule('nightly', domain='cli', command_type='Report', cron='0 3 * * *')]\n"
        "NOT_SCHEDULES = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = HandlerRegistry()
    registry.register(DOMAIN, "Report", lambda command, ctx: None)
    base = ["worker", "a:b", "--domain", DOMAIN]

    def parse(argv: list[str]) -> Any:
        args = build_parser().parse_args(argv)
        args.domain = DOMAIN  # what the supervisor sets for the one worker a process runs
        return args

    worker = _worker(object(), parse([*base, "--schedules", "shop_jobs:SCHEDULES"]), registry)
    assert worker.scheduler is not None
    assert [s.name for s in worker.scheduler.schedules] == ["nightly"]
    assert worker.pruner is not None
    assert worker.pruner.retention.older_than == timedelta(days=7)
    assert _worker(object(), parse([*base, "--retention", "off"]), registry).pruner is None
    month = _worker(object(), parse([*base, "--retention", "30d"]), registry).pruner
    assert month is not None and month.retention.older_than == timedelta(days=30)
    with pytest.raises(UsageError, match="not a list"):
        _worker(object(), parse([*base, "--schedules", "shop_jobs:NOT_SCHEDULES"]), registry)
    with pytest.raises(UsageError, match="--retention"):
        parse([*base, "--retention", "forever"])


async def test_pause_paused_and_resume(
    database_url: str, schema: str, pool: AsyncConnectionPool
) -> None:
    (paused,) = await run_many(
        db(database_url, schema, "--json", "pause", DOMAIN, "--reason", "INC-42")
    )
    assert paused.json()["domain"] == DOMAIN and paused.json()["operator"] == "night-shift"
    (listed,) = await run_many(db(database_url, schema, "paused"))
    assert DOMAIN in listed.stdout and "INC-42" in listed.stdout
    resumed, missing = await run_many(
        db(database_url, schema, "resume", DOMAIN),
        db(database_url, schema, "--json", "resume", "other"),
    )
    assert resumed.stdout.strip() == f"resumed {DOMAIN}"
    assert missing.json() == {"domain": "other", "resumed": False}
    (empty,) = await run_many(db(database_url, schema, "paused"))
    assert empty.stdout.strip() == "no domain is paused"
    (no_reason,) = await run_many(db(database_url, schema, "pause", DOMAIN))
    assert "--reason" in no_reason.one_line_error(2)


async def test_schedules_lists_those_of_the_code_with_their_stored_last_tick(
    database_url: str, schema: str, pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    served = Schedule("served", domain=DOMAIN, command_type="Report", every=3600)
    await Scheduler(pool, [served], schema=schema).run_due()
    (tmp_path / "cli_jobs.py").write_text(
        "from commandbus import Schedule\n"
        "SCHEDULES = [\n"
        "    Schedule('served', domain='cli', command_type='Report', every=3600),\n"
        "    Schedule('new', domain='cli', command_type='Report', cron='*/5 * * * *'),\n"
        "]\n"
    )
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    listed = await run_cli(
        *db(database_url, schema, "--json", "schedules"),
        "--schedules",
        "cli_jobs:SCHEDULES",
        PYTHONPATH=path,
    )
    rows = {row["name"]: row for row in listed.json()}
    assert rows["served"]["last_tick"] is not None
    assert rows["new"]["last_tick"] is None and rows["new"]["spec"] == "cron */5 * * * * UTC"
    assert rows["new"]["next_tick"] > rows["served"]["last_tick"]
