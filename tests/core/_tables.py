"""Direct reads of the bus's tables, to check what was (and was not) written."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import psycopg
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

TABLES = ("commands", "audit")


class Tables:
    """Direct access to the tables of one test schema, bypassing the bus."""

    def __init__(self, pool: AsyncConnectionPool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    async def rows(
        self, table: str, command_id: uuid.UUID | None = None, *, columns: str = "*"
    ) -> list[tuple[Any, ...]]:
        """Rows of ``table`` (optionally of one command), oldest first."""
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(columns), sql.Identifier(self.schema, table)
        )
        params: list[Any] = []
        if command_id is not None:
            query += sql.SQL(" WHERE command_id = %s")
            params.append(command_id)
        order = "audit_id" if table == "audit" else "created_at"
        query += sql.SQL(" ORDER BY {}").format(sql.Identifier(order))
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def count(self, table: str, command_id: uuid.UUID | None = None) -> int:
        return len(await self.rows(table, command_id, columns="1"))

    async def counts(self) -> dict[str, int]:
        """Row counts of commands and (stored) audit events: ``{table: n}``."""
        return {table: await self.count(table) for table in TABLES}

    async def execute(self, statement: str, params: Any = None) -> None:
        """Run a statement with ``{schema}`` replaced by the quoted schema; committed."""
        query = sql.SQL(statement).format(schema=sql.Identifier(self.schema))
        async with self.pool.connection() as conn:
            await conn.execute(query, params)


async def wait_for_lock_waiters(
    conn: AsyncConnection, schema: str, table: str, expected: int
) -> None:
    """Return once ``expected`` backends wait for a lock on ``schema.table``."""
    query = """
        SELECT count(*) FROM pg_locks
        WHERE NOT granted AND relation = (
            SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s
        )
    """
    while True:
        cur = await conn.execute(query, [schema, table])
        row = await cur.fetchone()
        if row is not None and row[0] >= expected:
            return
        await anyio.sleep(0.01)


def rows_written(database_url: str, schema: str) -> dict[str, int]:
    """Rows of every table of ``schema`` but its version table, by table (empty: no row
    anywhere). Blocking: for a check after a test has refused its inputs."""
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type = 'BASE TABLE' AND table_name <> 'schema_version'",
            [schema],
        ).fetchall()
        found = {}
        for (table,) in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            row = conn.execute(query).fetchone()
            if row and row[0]:
                found[table] = row[0]
    return found
