"""Shared plumbing for the benchmark scripts: a server, a fresh schema, a pool."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import migrate
from commandbus.testing import postgres_server


@contextmanager
def server_url() -> Iterator[str]:
    """DATABASE_URL, or a throwaway server with durable settings (figures you can report)."""
    with postgres_server(fast=False) as server:
        yield server.url


@asynccontextmanager
async def fresh_schema_pool(
    url: str, max_size: int = 20
) -> AsyncIterator[tuple[AsyncConnectionPool, str]]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    async with AsyncConnectionPool(url, min_size=max_size, max_size=max_size, open=False) as pool:
        await migrate(pool, schema=schema)
        try:
            yield pool, schema
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
