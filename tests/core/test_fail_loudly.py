"""A consumer on a schema that is missing or not migrated stops at once with a clear
error instead of logging a traceback every poll; bad CLI durations are refused."""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    ConfigurationError,
    HandlerContext,
    HandlerRegistry,
    ProcessReplyRouter,
    Schedule,
    Worker,
)
from commandbus.migrations import missing_migrations
from core._sagas import REPLY_QUEUE, OrderSaga
from core.helpers import DOMAIN, execute, make_worker, running, wait_until
from core.test_cli import HANDLERS, db, run_cli

pytestmark = pytest.mark.anyio  # the conftest marks async tests too late for parametrize


@pytest.fixture
async def bare_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool on a database where the test's schema was never migrated."""
    async with AsyncConnectionPool(database_url, min_size=1, max_size=16, open=False) as p:
        yield p


async def test_a_worker_on_an_unmigrated_schema_stops_with_a_clear_error(
    bare_pool: AsyncConnectionPool, schema: str
) -> None:
    worker = Worker(bare_pool, domain="d", registry=HandlerRegistry(), schema=schema)

    with pytest.raises(ConfigurationError) as caught:
        await asyncio.wait_for(worker.run(), 10)

    assert "is the schema migrated?" in str(caught.value)
    assert schema in str(caught.value)
    assert not worker.running


async def test_a_worker_on_an_unmigrated_schema_stops_at_once_and_logs_nothing_first(
    bare_pool: AsyncConnectionPool, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No heartbeat or registry warning, no pruner or scheduler error: the one error."""
    nightly = Schedule("nightly", domain="d", command_type="T", every=60)
    worker = Worker(
        bare_pool, domain="d", registry=HandlerRegistry(), schema=schema, schedules=[nightly]
    )
    started = time.monotonic()

    with caplog.at_level(logging.DEBUG, logger="commandbus"), pytest.raises(ConfigurationError):
        await asyncio.wait_for(worker.run(), 10)

    assert time.monotonic() - started < 5
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not worker.ready.is_set()


async def test_a_router_on_a_half_migrated_schema_stops_with_the_missing_versions(
    bare_pool: AsyncConnectionPool, database_url: str, schema: str
) -> None:
    from commandbus import _sql  # the version-3 schema, as an older release left it
    from commandbus.migrations import _PRELUDE

    async with bare_pool.connection() as conn:
        await conn.execute(_sql.render(_PRELUDE, schema), prepare=False)
        for version, name, template in _sql.migration_files():
            if version <= 3:
                await conn.execute(_sql.render(template, schema), prepare=False)
                await conn.execute(
                    sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(
                        sql.Identifier(schema, "schema_version")
                    ),
                    [version, name],
                )
    missing = await missing_migrations(bare_pool, schema)
    assert missing and missing[0] == 4

    saga = OrderSaga(CommandBus(bare_pool, schema=schema))
    router = ProcessReplyRouter(
        bare_pool, reply_queue=REPLY_QUEUE, managers=[saga], schema=schema, concurrency=2
    )
    with pytest.raises(ConfigurationError) as caught:
        await asyncio.wait_for(router.run(), 10)
    assert str(missing) in str(caught.value)


async def test_the_cli_worker_exits_non_zero_on_an_unmigrated_schema(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "cli_handlers.py").write_text(textwrap.dedent(HANDLERS))
    result = await run_cli(
        *db(database_url, f"never_{uuid.uuid4().hex[:8]}", "worker", "cli_handlers:registry"),
        "--domain",
        "cli",
        PYTHONPATH=str(tmp_path),
    )
    assert result.status != 0
    assert "is the schema migrated?" in result.stderr
    assert "WARNING" not in result.stderr  # no heartbeat or registry warning before it
    assert "heartbeat" not in result.stderr


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
async def test_the_cli_worker_refuses_a_stop_timeout_that_is_not_a_duration(value: str) -> None:
    result = await run_cli("worker", "app:registry", "--domain", "d", "--stop-timeout", value)
    assert result.status == 2
    assert "--stop-timeout" in result.stderr


async def test_an_outcome_that_cannot_be_recorded_is_logged_once(
    pool: AsyncConnectionPool, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    await execute(
        pool,
        schema,
        """
        CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
        CREATE TRIGGER refuse BEFORE UPDATE ON {schema}.commands FOR EACH ROW
        WHEN (NEW.status = 'COMPLETED') EXECUTE FUNCTION {schema}.refuse();
        """,
    )
    registry = HandlerRegistry()
    ran = asyncio.Event()

    @registry.handler(DOMAIN, "Job")
    async def job(command: Command, ctx: HandlerContext) -> None:
        ran.set()

    command_id = uuid.uuid4()
    await CommandBus(pool, schema=schema).send(DOMAIN, "Job", command_id, {})
    worker = make_worker(pool, schema, registry)
    with caplog.at_level(logging.ERROR, logger="commandbus"):
        async with running(worker):
            await asyncio.wait_for(ran.wait(), 10)
            await wait_until(
                lambda: _logged(caplog, str(command_id)), what="the failure to be logged"
            )

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert str(command_id) in errors[0].getMessage()


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)
