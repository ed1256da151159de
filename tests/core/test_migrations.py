"""``migrate``: idempotent, safe to run concurrently, and available as plain SQL."""

from __future__ import annotations

import uuid

import anyio
import psycopg
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, migrate, migration_sql

CORE_TABLES = {"schema_version", "commands", "replies", "audit", "workers"}


async def _tables(conn: AsyncConnection, schema: str) -> set[str]:
    cur = await conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
    )
    return {row[0] for row in await cur.fetchall()}


async def _versions(conn: AsyncConnection, schema: str) -> list[int]:
    query = sql.SQL("SELECT version FROM {} ORDER BY version")
    cur = await conn.execute(query.format(sql.Identifier(schema, "schema_version")))
    return [row[0] for row in await cur.fetchall()]


async def test_migrate_creates_the_schema_and_records_what_it_applied(
    database_url: str, schema: str
) -> None:
    async with AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False) as pool:
        applied = await migrate(pool, schema=schema)

        async with pool.connection() as conn:
            tables = await _tables(conn, schema)
            assert tables >= CORE_TABLES
            # Version 4 made the command row the queue: the queue table is gone.
            assert "queue" not in tables
            assert applied == await _versions(conn, schema)
        assert applied[0] == 1
        # The schema is usable straight away.
        bus = CommandBus(pool, schema=schema)
        command_id = uuid.uuid4()
        await bus.send("payments", "Charge", command_id, {})
        assert await bus.get_command("payments", command_id) is not None


async def test_migrating_twice_applies_nothing_the_second_time(
    database_url: str, schema: str
) -> None:
    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        first = await migrate(conn, schema=schema)
        tables, versions = await _tables(conn, schema), await _versions(conn, schema)

        assert first
        assert await migrate(conn, schema=schema) == []
        assert await _tables(conn, schema) == tables
        assert await _versions(conn, schema) == versions


async def test_migrate_on_a_plain_connection_commits_its_work(
    database_url: str, schema: str
) -> None:
    async with await AsyncConnection.connect(database_url) as conn:
        await migrate(conn, schema=schema)
    async with await AsyncConnection.connect(database_url) as other:
        assert await _tables(other, schema) >= CORE_TABLES


async def test_two_concurrent_migrations_both_succeed_and_make_one_schema(
    database_url: str, schema: str
) -> None:
    """Both runs are held at migrate's advisory lock, then released together."""
    key = f"commandbus.migrate:{schema}"
    results: dict[int, list[int]] = {}

    async def run(n: int) -> None:
        async with await AsyncConnection.connect(database_url) as conn:
            results[n] = await migrate(conn, schema=schema)

    async with await AsyncConnection.connect(database_url, autocommit=True) as gate:
        await gate.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, 1)
                tg.start_soon(run, 2)
                await _wait_for_advisory_waiters(gate, 2)
                await gate.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])

        assert sorted(results.values(), key=len) == [[], await _versions(gate, schema)]
        assert await _tables(gate, schema) >= CORE_TABLES


async def _wait_for_advisory_waiters(conn: AsyncConnection, expected: int) -> None:
    while True:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        row = await cur.fetchone()
        if row is not None and row[0] >= expected:
            return
        await anyio.sleep(0.01)


def test_migration_sql_renders_the_schema_into_every_statement() -> None:
    script = migration_sql("billing_v2")

    assert 'CREATE SCHEMA IF NOT EXISTS "billing_v2"' in script
    assert 'CREATE TABLE "billing_v2".commands' in script
    assert 'INSERT INTO "billing_v2".schema_version' in script
    assert "{schema}" not in script
    assert '"commandbus".' not in script
    assert 'CREATE TABLE "commandbus".commands' in migration_sql()


def test_migration_sql_after_a_version_leaves_that_version_out() -> None:
    script = migration_sql("billing", after=1)
    assert 'CREATE TABLE "billing".commands' not in script


async def test_the_rendered_sql_is_equivalent_to_migrate(database_url: str, schema: str) -> None:
    """What an operator applies with their own tool is what migrate would have done."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(migration_sql(schema).encode())

    async with AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False) as pool:
        assert await migrate(pool, schema=schema) == []
        bus = CommandBus(pool, schema=schema)
        command_id = uuid.uuid4()
        await bus.send("payments", "Charge", command_id, {})
        assert await bus.get_command("payments", command_id) is not None
