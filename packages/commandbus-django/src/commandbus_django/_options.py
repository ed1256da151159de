"""The backend's settings: ``TASKS[alias]["OPTIONS"]``, read once and checked, and the
options a task may carry (``@task(max_attempts=..., timeout=..., max_running=...)``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = ["BackendOptions", "check_task_option", "our_priority"]

_KNOWN = {
    "DATABASE",
    "SCHEMA",
    "MAX_ATTEMPTS",
    "BACKOFF",
    "VISIBILITY_TIMEOUT",
    "TIMEOUT",
    "CONCURRENCY",
    "SCHEDULES",
    "RETENTION_DAYS",
}


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """What ``OPTIONS`` says, with the defaults filled in."""

    #: The Django database alias tasks are written on (and commit with).
    database: str = "default"
    #: The PostgreSQL schema of commandbus's tables.
    schema: str = "commandbus"
    #: Attempts of a task that keeps failing, unless it sets its own.
    max_attempts: int = 3
    #: Seconds before retry 1, 2, ...; the last repeats (the workers' retry policy).
    backoff: tuple[float, ...] = (10.0, 60.0, 300.0)
    #: A run's lease: a task still running after it (without extending) runs again.
    visibility_timeout: float = 30.0
    #: Seconds a run may take, unless the task sets its own (None: no limit).
    timeout: float | None = None
    #: Tasks each worker process runs at once.
    concurrency: int = 10
    #: Periodic tasks: mappings with "task", "cron" or "every", and optional "args",
    #: "kwargs", "name", "queue" (see docs/django.md).
    schedules: tuple[Mapping[str, Any], ...] = ()
    #: Finished tasks are deleted after this many days (None: kept).
    retention_days: float | None = 7.0

    @classmethod
    def parse(cls, alias: str, options: Mapping[str, Any]) -> BackendOptions:
        where = f"TASKS[{alias!r}]['OPTIONS']"
        if not isinstance(options, Mapping):
            raise ImproperlyConfigured(f"{where} must be a dict, got {type(options).__name__}")
        unknown = sorted(set(options) - _KNOWN)
        if unknown:
            raise ImproperlyConfigured(
                f"{where} has unknown keys {unknown}; known: {', '.join(sorted(_KNOWN))}"
            )
        defaults = cls()
        try:
            return cls(
                database=_text(options.get("DATABASE", defaults.database), "DATABASE"),
                schema=_text(options.get("SCHEMA", defaults.schema), "SCHEMA"),
                max_attempts=_whole(options.get("MAX_ATTEMPTS", defaults.max_attempts)),
                backoff=_backoff(options.get("BACKOFF", defaults.backoff)),
                visibility_timeout=_seconds(
                    options.get("VISIBILITY_TIMEOUT", defaults.visibility_timeout)
                ),
                timeout=_optional_seconds(options.get("TIMEOUT")),
                concurrency=_whole(options.get("CONCURRENCY", defaults.concurrency)),
                schedules=_schedules(options.get("SCHEDULES", ())),
                retention_days=_optional_seconds(
                    options.get("RETENTION_DAYS", defaults.retention_days)
                ),
            )
        except ValueError as exc:
            raise ImproperlyConfigured(f"{where}: {exc}") from None


def check_task_option(name: str, value: object) -> None:
    """A task's own ``max_attempts``/``max_running`` (whole, >= 1) or ``timeout`` (> 0 s);
    raises ValueError with what is wrong."""
    if value is None:
        return
    if name == "timeout":
        _seconds(value)
    else:
        _whole(value)


def our_priority(django_priority: int) -> int:
    """Django's -100..100 (higher runs sooner) onto commandbus's 0..9 (0 runs first), in
    ten bands of 20: 81..100 -> 0, 61..80 -> 1, ..., 1..20 -> 4, -19..0 (the default 0)
    -> 5, ..., -100..-80 -> 9."""
    return min(9, (100 - django_priority) // 20)


def _text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a whole number >= 1, got {value!r}")
    return value


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be more than 0 seconds, got {value!r}")
    return float(value)


def _optional_seconds(value: object) -> float | None:
    return None if value is None else _seconds(value)


def _backoff(value: object) -> tuple[float, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"BACKOFF must be a non-empty list of seconds, got {value!r}")
    delays = []
    for delay in value:
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise ValueError(f"BACKOFF holds seconds >= 0, got {delay!r}")
        delays.append(float(delay))
    return tuple(delays)


def _schedules(value: object) -> tuple[Mapping[str, Any], ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"SCHEDULES must be a list of dicts, got {value!r}")
    for entry in value:
        if not isinstance(entry, Mapping) or "task" not in entry:
            raise ValueError(f"each of SCHEDULES needs a 'task' (its import path), got {entry!r}")
        if ("cron" in entry) == ("every" in entry):
            raise ValueError(f"each of SCHEDULES needs 'cron' or 'every', not both: {entry!r}")
    return tuple(value)
