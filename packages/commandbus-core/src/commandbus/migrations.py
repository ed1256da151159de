"""Schema migrations: numbered SQL files shipped in ``commandbus/sql/migrations``.

``migrate`` is idempotent and safe to run from many processes at start-up: a
transaction-scoped advisory lock serialises them, and a version table records
what has been applied.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._db import fetch_all
from commandbus._validation import check_schema

__all__ = ["migrate", "migration_sql"]

_PRELUDE = """\
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.schema_version (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


def migration_sql(schema: str = "commandbus", *, after: int = 0) -> str:
    """The whole schema as one SQL script, for operators who run their own migration tool."""
    check_schema(schema)
    parts = [_sql.render(_PRELUDE, schema).decode()]
    for version, name, template in _sql.migration_files():
        if version > after:
            parts.append(f"-- {name}\n" + _sql.render(template, schema).decode())
            parts.append(
                _sql.render(
                    f"INSERT INTO {{schema}}.schema_version (version, name) "
                    f"VALUES ({version}, '{name}') ON CONFLICT DO NOTHING;\n",
                    schema,
                ).decode()
            )
    return "\n".join(parts)


async def migrate(
    pool_or_conn: AsyncConnectionPool | AsyncConnection, *, schema: str = "commandbus"
) -> list[int]:
    """Create or upgrade ``schema``; returns the versions applied by this call."""
    check_schema(schema)
    if isinstance(pool_or_conn, AsyncConnectionPool):
        async with pool_or_conn.connection() as conn:
            return await _migrate(conn, schema)
    return await _migrate(pool_or_conn, schema)


async def _migrate(conn: AsyncConnection, schema: str) -> list[int]:
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"commandbus.migrate:{schema}"]
        )
        # Scripts of several statements cannot be prepared, whatever the connection's
        # prepare_threshold (0 would prepare everything).
        await conn.execute(_sql.render(_PRELUDE, schema), prepare=False)
        versions = _sql.render("SELECT version FROM {schema}.schema_version", schema)
        done = {row[0] for row in await fetch_all(conn, versions, None)}
        for version, name, template in _sql.migration_files():
            if version in done:
                continue
            await conn.execute(_sql.render(template, schema), prepare=False)
            await conn.execute(
                _sql.render(
                    "INSERT INTO {schema}.schema_version (version, name) VALUES (%s, %s)", schema
                ),
                [version, name],
            )
            applied_now.append(version)
    return applied_now
