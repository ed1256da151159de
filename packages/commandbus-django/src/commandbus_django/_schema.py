"""Creating or upgrading commandbus's tables from Django (its migration runs this)."""

from __future__ import annotations

import psycopg

from commandbus import migrate
from commandbus_django._connection import conninfo, unsupported_reason
from commandbus_sync.runtime import get_default_runtime

__all__ = ["migrate_schemas", "schemas_on"]


def schemas_on(alias: str) -> list[str]:
    """The schemas of the commandbus backends that write on database ``alias``."""
    from commandbus_django.apps import our_backends

    return sorted(
        {
            backend.settings.schema
            for backend in our_backends().values()
            if backend.settings.database == alias
        }
    )


def migrate_schemas(alias: str) -> list[str]:
    """Migrate every commandbus schema on ``alias``, each on a connection of its own (our
    migration takes an advisory lock and commits by itself); returns the schemas."""
    schemas = schemas_on(alias)
    if schemas and unsupported_reason(alias) is None:  # (the system check says why not)
        get_default_runtime().run(_migrate, conninfo(alias), schemas)
    return schemas


async def _migrate(dsn: str, schemas: list[str]) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        for schema in schemas:
            await migrate(conn, schema=schema)
