"""commandbus's tables, in the schema of each commandbus task backend on this database
(``commandbus.migrate``: idempotent, so it also upgrades a schema made by the CLI)."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def create_schemas(apps: Any, schema_editor: Any) -> None:
    from commandbus_django._schema import migrate_schemas

    migrate_schemas(schema_editor.connection.alias)


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.RunPython(create_schemas, migrations.RunPython.noop, elidable=False),
    ]
