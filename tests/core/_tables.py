"""Direct reads of the bus's tables, to check what was (and was not) written."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
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
