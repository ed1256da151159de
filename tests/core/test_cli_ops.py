"""``commandbus prune``, ``pause``/``resume``/``paused`` and ``schedules``, run as
subprocesses against the real database."""

from __future__ import annotations

import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus
from core.helpers import execute
from core.test_cli import db, run_many

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
