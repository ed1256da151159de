"""One import site for the ``django.tasks`` API: Django 6's own, or the ``django-tasks``
backport on Django 5.2. Everything else in this package imports from here."""

from __future__ import annotations

from typing import Any

import django

__all__ = [
    "DEFAULT_TASK_PRIORITY",
    "TASK_MAX_PRIORITY",
    "TASK_MIN_PRIORITY",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]

#: Whether ``django.tasks`` is Django's own (6.0+) rather than the backport.
BUILT_IN = django.VERSION >= (6, 0)

if BUILT_IN:
    from django.tasks import task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import (
        DEFAULT_TASK_PRIORITY,
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
else:  # Django 5.2: the backport (pip install "commandbus-django[backport]")
    try:
        from django_tasks import task_backends
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            f"commandbus_django needs django.tasks: Django {django.get_version()} lacks it, "
            'install the backport: pip install "commandbus-django[backport]" (django-tasks)'
        ) from exc
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import (
        DEFAULT_TASK_PRIORITY,
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json


def set_field(frozen: Any, name: str, value: Any) -> None:
    """TaskResult is a frozen dataclass; Django's own backends fill it in this way too."""
    object.__setattr__(frozen, name, value)
