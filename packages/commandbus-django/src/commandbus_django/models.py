"""No tables of Django's own: commandbus's live in their schema (the migration makes
them). This unmanaged model only carries the console's permission."""

from __future__ import annotations

from django.db import models


class Console(models.Model):  # type: ignore[misc]
    class Meta:
        managed = False
        default_permissions = ()
        permissions = (("operate_console", "Can act on commands in the commandbus console"),)
