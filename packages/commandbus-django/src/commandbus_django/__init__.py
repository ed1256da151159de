"""commandbus for Django: a ``django.tasks`` backend that writes tasks in the caller's
transaction, workers and operator verbs from ``manage.py commandbus``, periodic tasks,
and the operator console under Django's sign-in.

    INSTALLED_APPS = [..., "commandbus_django"]
    TASKS = {"default": {"BACKEND": "commandbus_django.CommandBusBackend"}}

Names are imported lazily: importing this package (as ``INSTALLED_APPS`` does, before
the app registry is ready) imports neither ``django.tasks`` nor the bus.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from commandbus_django.backend import CommandBusBackend, CommandBusTask
    from commandbus_django.periodic import periodic

__version__ = "0.1.0"

__all__ = ["CommandBusBackend", "CommandBusTask", "periodic"]

_LAZY = {
    "CommandBusBackend": "commandbus_django.backend",
    "CommandBusTask": "commandbus_django.backend",
    "periodic": "commandbus_django.periodic",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'commandbus_django' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
