"""Loads the library's SQL: one statement per file under ``sql/queries``.

Statements are written with a ``{schema}`` placeholder; they are rendered once
per schema with the schema quoted by :class:`psycopg.sql.Identifier`, so no
user string ever reaches SQL as text. The rendered bytes are cached.
"""

from __future__ import annotations

import functools
from importlib import resources

from psycopg import sql

__all__ = ["migration_files", "query", "render"]

_PACKAGE = "commandbus.sql"


def render(template: str, schema: str, **fragments: str) -> bytes:
    """Render a template with ``{schema}`` replaced by the quoted identifier.

    Any other placeholder takes a SQL fragment from ``fragments``: constants of the
    library that select a variant of a statement, never user input.
    """
    composed = sql.SQL(template).format(
        schema=sql.Identifier(schema), **{k: sql.SQL(v) for k, v in fragments.items()}
    )
    return composed.as_string(None).encode()


@functools.cache
def _template(name: str) -> str:
    return resources.files(_PACKAGE).joinpath("queries", f"{name}.sql").read_text("utf-8")


@functools.cache
def query(name: str, schema: str, **fragments: str) -> bytes:
    """The statement ``sql/queries/<name>.sql`` for ``schema``, ready to execute."""
    return render(_template(name), schema, **fragments)


def migration_files() -> list[tuple[int, str, str]]:
    """``(version, name, template)`` for every shipped migration, in order."""
    folder = resources.files(_PACKAGE).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text("utf-8")))
    return sorted(found)
