"""commandbus's tables, in the schema of each commandbus task backend on this database
(``commandbus.migrate``: idempotent, so it also upgrades a schema made by the CLI)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations


def create_schemas(apps: Any, schema_editor: Any) -> None:
    from commandbus_django._schema import migrate_schemas

    migrate_schemas(schema_editor.connection.alias)


class Migration(migrations.Migration):  # type: ignore[misc]
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []
    operations: ClassVar[list[Any]] = [
        migrations.RunPython(create_schemas, migrations.RunPython.noop, elidable=False),
    ]
