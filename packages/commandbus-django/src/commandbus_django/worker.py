"""What ``manage.py commandbus worker`` hands to commandbus's worker command line, which
imports ``commandbus_django.worker:registry`` (and ``:schedules``) in each worker process.

Reading either sets Django up first (``django.setup()``, from ``DJANGO_SETTINGS_MODULE``)
when the process is a worker process started by the supervisor (``--processes``).
The backend and queues come from the environment the management command sets.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["BACKEND_ENV", "QUEUES_ENV"]

#: The TASKS alias the workers serve.
BACKEND_ENV = "COMMANDBUS_DJANGO_BACKEND"
#: The queues they serve, comma-separated.
QUEUES_ENV = "COMMANDBUS_DJANGO_QUEUES"


def __getattr__(name: str) -> Any:
    if name == "registry":
        return build_registry()
    if name == "schedules":
        return build_schedules()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _backend() -> Any:
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup()
    from commandbus_django._compat import task_backends

    return task_backends[os.environ.get(BACKEND_ENV, "default")]


def _queues(backend: Any) -> list[str]:
    given = [q for q in os.environ.get(QUEUES_ENV, "").split(",") if q]
    return given or sorted(backend.queues)


def build_registry() -> Any:
    from commandbus_django._execution import TaskRegistry

    backend = _backend()
    return TaskRegistry(backend.alias, _queues(backend), timeout=backend.settings.timeout)


def build_schedules() -> list[Any]:
    from commandbus_django.periodic import schedules_for

    backend = _backend()
    return schedules_for(backend)
