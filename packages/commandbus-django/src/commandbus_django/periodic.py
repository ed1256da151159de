"""Periodic tasks, run through commandbus's schedules (each tick once across workers).

Declared next to the task::

    @task
    def nightly_report(): ...

    periodic(nightly_report, cron="0 3 * * *", tz="Europe/Paris")

or in settings, ``TASKS["default"]["OPTIONS"]["SCHEDULES"] = [{"task":
"reports.tasks.nightly_report", "cron": "0 3 * * *"}]``. Workers started by
``manage.py commandbus worker`` send them (``commandbus schedules`` lists them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from django.utils.module_loading import import_string

from commandbus import Schedule
from commandbus_django._compat import normalize_json
from commandbus_django._options import our_priority

__all__ = ["periodic", "schedules_for"]

#: Declared with periodic(), by backend alias.
_declared: dict[str, list[dict[str, Any]]] = {}


def periodic(
    task: Any,
    *,
    cron: str | None = None,
    every: timedelta | float | None = None,
    tz: str = "UTC",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Any:
    """Run ``task`` on ``cron`` (5 or 6 fields, in ``tz``) or ``every`` interval, with
    ``args``/``kwargs``; ``name`` (default: the task's import path) identifies the
    schedule. Returns the task, so it can follow the ``@task`` decorator."""
    entry = {"task": task, "cron": cron, "every": every, "tz": tz, "args": list(args)}
    entry.update(kwargs={} if kwargs is None else dict(kwargs), name=name)
    _schedule(task.backend, entry)  # checked now: a mistake fails at import, not later
    _declared.setdefault(task.backend, []).append(entry)
    return task


def schedules_for(backend: Any) -> list[Schedule]:
    """The backend's schedules: from settings, then those declared with periodic()."""
    entries = [dict(e) for e in backend.settings.schedules]
    entries += _declared.get(backend.alias, [])
    return [_schedule(backend.alias, entry) for entry in entries]


def _schedule(alias: str, entry: Mapping[str, Any]) -> Schedule:
    task = entry["task"]
    if isinstance(task, str):
        task = import_string(task)
    if task.backend != alias:
        raise ValueError(f"{task.module_path} is a task of backend {task.backend!r}")
    backend = task.get_backend()
    queue = entry.get("queue") or task.queue_name
    return Schedule(
        entry.get("name") or task.module_path,
        domain=queue,
        command_type=task.module_path,
        data={
            "args": normalize_json(list(entry.get("args") or [])),
            "kwargs": normalize_json(dict(entry.get("kwargs") or {})),
            "priority": task.priority,
        },
        cron=entry.get("cron"),
        every=entry.get("every"),
        tz=entry.get("tz") or "UTC",
        max_attempts=getattr(task, "max_attempts", None) or backend.settings.max_attempts,
        priority=our_priority(task.priority),
    )
