"""Direct reads of the bus's tables, to check what was (and was not) written."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

TABLES = ("commands", "queue", "audit")


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
        order = "msg_id" if table == "queue" else "audit_id" if table == "audit" else "created_at"
        query += sql.SQL(" ORDER BY {}").format(sql.Identifier(order))
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def count(self, table: str, command_id: uuid.UUID | None = None) -> int:
        return len(await self.rows(table, command_id, columns="1"))

    async def counts(self) -> dict[str, int]:
        """Row counts of commands, queue and audit: ``{table: n}``."""
        return {table: await self.count(table) for table in TABLES}

    async def execute(self, statement: str, params: Any = None) -> None:
        """Run a statement with ``{schema}`` replaced by the quoted schema; committed."""
        query = sql.SQL(statement).format(schema=sql.Identifier(self.schema))
        async with self.pool.connection() as conn:
            await conn.execute(query, params)
