"""Schema migrations: numbered SQL files shipped in ``commandbus/sql/migrations``.

``migrate`` is idempotent and safe to run from many processes at start-up: a
transaction-scoped advisory lock serialises them, and a version table records
what has been applied.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from psycopg import AsyncConnection, OperationalError, errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from commandbus import _sql
from commandbus._db import fetch_all
from commandbus._errors import ConfigurationError
from commandbus._validation import check_schema

log = logging.getLogger("commandbus.migrations")

__all__ = [
    "fail_if_not_migrated",
    "migrate",
    "migration_sql",
    "applied_migrations",
    "missing_migrations",
    "require_migrated",
    "shipped_migrations",
    "verify_at_start",
]

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
        done = await applied_migrations(conn, schema) or set()  # the prelude made the table
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


async def applied_migrations(conn: AsyncConnection[Any], schema: str) -> set[int] | None:
    """The versions applied to ``schema``; None if it has no version table (the schema
    is missing, misspelled, or was never migrated). One statement on ``conn``."""
    try:
        rows = await fetch_all(conn, _sql.query("schema_versions", schema), None)
    except (errors.UndefinedTable, errors.InvalidSchemaName):
        return None
    return {row[0] for row in rows}


def shipped_migrations() -> list[int]:
    """The versions this library ships, in order."""
    return [version for version, _, _ in _sql.migration_files()]


async def missing_migrations(pool: AsyncConnectionPool, schema: str = "commandbus") -> list[int]:
    """Versions shipped with this library that ``schema`` lacks (all of them if the schema
    or its version table does not exist)."""
    check_schema(schema)
    async with pool.connection() as conn:
        applied = await applied_migrations(conn, schema) or set()
    return [version for version in shipped_migrations() if version not in applied]


async def require_migrated(pool: AsyncConnectionPool, schema: str = "commandbus") -> None:
    """Raise ``ConfigurationError`` unless ``schema`` has every migration of this library:
    a worker on an unmigrated or misspelled schema must stop at start-up, not fail every
    poll."""
    _raise_if_missing(schema, await missing_migrations(pool, schema))


#: At start, how long the schema check may wait for the database: past it, the consumer
#: starts anyway (a server that is down must not hold up ``ready``), and its fetch loop
#: checks the schema when a statement fails.
START_CHECK_S = 2.0


async def verify_at_start(pool: AsyncConnectionPool, schema: str, stop: asyncio.Event) -> None:
    """A long-running consumer's first step, before it registers, listens or starts its
    background tasks: :func:`require_migrated`, so that an unmigrated schema stops it
    with one clear error before anything else touched the schema and logged a failure of
    its own. A database out of reach (no answer within :data:`START_CHECK_S`) is only
    logged, and a stop request ends the wait."""
    check = asyncio.ensure_future(missing_migrations(pool, schema))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({check, stopping}, timeout=START_CHECK_S, return_when="FIRST_COMPLETED")
    finally:
        stopping.cancel()
        if not check.done():  # stopped, timed out, or the caller was cancelled
            check.cancel()
            await asyncio.wait({check})  # no task left behind
    if check.cancelled():
        if not stop.is_set():
            log.warning(
                "cannot check schema %r yet (no answer within %g s); checking again when "
                "a statement fails",
                schema,
                START_CHECK_S,
            )
        return
    try:
        missing = check.result()
    except (OperationalError, PoolTimeout) as exc:
        log.warning("cannot check schema %r yet (%s); retrying in the fetch loop", schema, exc)
        return
    _raise_if_missing(schema, missing)


def _raise_if_missing(schema: str, missing: list[int]) -> None:
    if missing:
        raise ConfigurationError(
            f"schema {schema!r} lacks migrations {missing}: is the schema migrated? "
            f"(commandbus migrate --schema {schema}), or is its name misspelled?"
        )


#: Errors a statement of ours gets from a schema that is missing or not migrated.
_SCHEMA_ERRORS = (
    errors.UndefinedTable,
    errors.UndefinedColumn,
    errors.UndefinedObject,
    errors.InvalidSchemaName,
)


async def fail_if_not_migrated(exc: BaseException, pool: AsyncConnectionPool, schema: str) -> None:
    """After a statement failed with ``exc``: raise ``ConfigurationError`` if the cause is
    a schema that is missing or behind (a long-running consumer must stop, not retry it
    every poll); return if the failure is anything else."""
    if isinstance(exc, _SCHEMA_ERRORS):
        await require_migrated(pool, schema)
