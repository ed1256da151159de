"""The console's permission (``commandbus.operate_console``), on an unmanaged model."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):  # type: ignore[misc]
    dependencies: ClassVar[list[tuple[str, str]]] = [("commandbus", "0001_initial")]
    operations: ClassVar[list[Any]] = [
        migrations.CreateModel(
            name="Console",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                )
            ],
            options={
                "managed": False,
                "default_permissions": (),
                "permissions": (
                    ("operate_console", "Can act on commands in the commandbus console"),
                ),
            },
        ),
    ]
