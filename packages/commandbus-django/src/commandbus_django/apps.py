"""The Django app: ``INSTALLED_APPS = [..., "commandbus_django"]`` brings the migration
that creates commandbus's tables, ``manage.py commandbus`` and the system check."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks


class CommandBusConfig(AppConfig):  # type: ignore[misc]
    name = "commandbus_django"
    label = "commandbus"
    verbose_name = "commandbus"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        checks.register(check_databases, checks.Tags.database, deploy=False)


def our_backends() -> dict[str, Any]:
    """The configured task backends that are commandbus's, by alias."""
    from django.conf import settings

    from commandbus_django._compat import task_backends
    from commandbus_django.backend import CommandBusBackend

    found = {}
    for alias, params in getattr(settings, "TASKS", {}).items():
        path = params.get("BACKEND", "")
        if path.startswith("commandbus_django"):
            backend = task_backends[alias]
            if isinstance(backend, CommandBusBackend):
                found[alias] = backend
    return found


def check_databases(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Each commandbus backend's database must be PostgreSQL on psycopg 3: tasks are
    written on Django's own connection."""
    errors: list[checks.CheckMessage] = []
    for alias, backend in our_backends().items():
        problem = backend.database_problem()
        if problem is not None:
            errors.append(
                checks.Error(
                    f"TASKS[{alias!r}] (commandbus) cannot use its database: {problem}",
                    hint="Point OPTIONS['DATABASE'] at a PostgreSQL database on psycopg 3.",
                    obj=backend,
                    id="commandbus.E001",
                )
            )
    return errors
