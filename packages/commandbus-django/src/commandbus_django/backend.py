"""``CommandBusBackend``: a ``django.tasks`` backend on commandbus.

A task is a command: its queue is the command's domain, its import path the command
type, its arguments the command's data. ``enqueue`` writes it on Django's own connection,
so it commits or rolls back with the caller's ``transaction.atomic()`` block; workers
(``manage.py commandbus worker``) run it with leases, retries, timeouts, the
troubleshooting queue and the audit trail of commandbus.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils import timezone

from commandbus import DuplicateCommandError, ValidationError, handler
from commandbus_django import _compat, _results
from commandbus_django._compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)
from commandbus_django._connection import callers_connection, unsupported_reason
from commandbus_django._handles import handles_for
from commandbus_django._options import BackendOptions, check_task_option, our_priority
from commandbus_django._uncommitted import note_enqueued

__all__ = ["CommandBusBackend", "CommandBusTask", "declared_tasks"]

#: Namespace of the command ids made from a dedupe key (uuid5).
DEDUPE_NAMESPACE = uuid.UUID("6f1c1f9e-58a2-4a0e-9d0e-6b3d7c1a2b40")

#: Tasks declared for each backend alias, by import path (what workers can run).
_declared: dict[str, dict[str, Any]] = {}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommandBusTask(Task):  # type: ignore[misc]
    """A task with commandbus's options, given to ``@task(...)`` as keywords:
    ``max_attempts`` (attempts before the troubleshooting queue), ``timeout`` (seconds a
    run may take), ``max_running`` (runs at once across every worker). ``using(dedupe_key=
    "...")`` enqueues at most one task per key (the key is the command's id)."""

    max_attempts: int | None = None
    timeout: float | None = None
    max_running: int | None = None
    dedupe_key: str | None = None

    def using(self, *, dedupe_key: str | None = None, **changes: Any) -> CommandBusTask:
        """Django's ``using()`` (priority, queue_name, run_after, backend), and
        ``dedupe_key``."""
        task: CommandBusTask = Task.using(self, **changes)
        if dedupe_key is not None:
            task = dataclasses.replace(task, dedupe_key=dedupe_key)
        return task


def declared_tasks(alias: str) -> dict[str, Any]:
    """The tasks of backend ``alias`` imported so far, by import path."""
    return dict(_declared.get(alias, {}))


class CommandBusBackend(BaseTaskBackend):  # type: ignore[misc]
    """``TASKS = {"default": {"BACKEND": "commandbus_django.CommandBusBackend",
    "QUEUES": ["default"], "OPTIONS": {...}}}`` (options: docs/django.md)."""

    task_class = CommandBusTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.settings = BackendOptions.parse(alias, self.options)
        self._database_checked = False
        for queue in self.queues:
            try:
                handler(queue, "task")  # validates the name as a domain, nothing else
            except ValidationError as exc:
                raise ImproperlyConfigured(f"TASKS[{alias!r}]['QUEUES']: {exc}") from None

    # -- validating --------------------------------------------------------------------

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        try:
            handler(task.queue_name, task.module_path)  # both valid as a handler's key
            for name in ("max_attempts", "timeout", "max_running"):
                check_task_option(name, getattr(task, name, None))
        except (ValidationError, ValueError) as exc:
            raise InvalidTask(str(exc)) from None
        dedupe_key = getattr(task, "dedupe_key", None)
        if dedupe_key is not None and (not isinstance(dedupe_key, str) or not dedupe_key):
            raise InvalidTask(f"dedupe_key must be a non-empty string, got {dedupe_key!r}")
        _declared.setdefault(self.alias, {}).setdefault(task.module_path, task)

    def database_problem(self) -> str | None:
        """Why this backend's database cannot carry tasks (see the system check), or None."""
        return unsupported_reason(self.settings.database)

    # -- enqueueing --------------------------------------------------------------------

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Write the task in the caller's transaction on Django's connection: it becomes
        visible to workers when that transaction commits, and is gone if it rolls back."""
        self.validate_task(task)
        if not self._database_checked:
            problem = self.database_problem()
            if problem is not None:
                raise ImproperlyConfigured(f"TASKS[{self.alias!r}]: {problem}")
            self._database_checked = True
        dedupe_key = getattr(task, "dedupe_key", None)
        result = TaskResult(
            task=task,
            id=str(self._command_id(task, dedupe_key)),
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )  # normalises args and kwargs: what is not JSON fails here, before any write
        settings = self.settings
        handles = handles_for(settings.database, settings.schema)
        try:
            handles.bus.send(
                task.queue_name,
                task.module_path,
                uuid.UUID(result.id),
                {"args": result.args, "kwargs": result.kwargs, "priority": task.priority},
                max_attempts=getattr(task, "max_attempts", None) or settings.max_attempts,
                delay=_delay(task.run_after),
                priority=our_priority(task.priority),
                conn=callers_connection(settings.database),
            )
        except DuplicateCommandError:
            if dedupe_key is None:
                raise
            return self._existing(result)
        if connections[settings.database].in_atomic_block:
            note_enqueued(settings.database, result.id)
        _compat.set_field(result, "enqueued_at", timezone.now())
        _compat.task_enqueued.send(type(self), task_result=result)
        return result

    def _command_id(self, task: Any, dedupe_key: str | None) -> uuid.UUID:
        if dedupe_key is None:
            return uuid.uuid4()
        return uuid.uuid5(DEDUPE_NAMESPACE, f"{task.module_path}\x00{dedupe_key}")

    def _existing(self, fresh: Any) -> Any:
        """A deduplicated enqueue: the task enqueued earlier with the same key (as the
        caller's transaction sees it, it may not be committed yet: then READY)."""
        try:
            return self.get_result(fresh.id)
        except TaskResultDoesNotExist:
            return fresh

    # -- results -----------------------------------------------------------------------

    def get_result(self, result_id: str) -> Any:
        """The task's state as committed: status, attempts, workers, errors with their
        tracebacks, the return value."""
        try:
            command_id = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        settings = self.settings
        handles = handles_for(settings.database, settings.schema)
        found = handles.runtime.run(_results.read, handles.bus.bus, command_id, sorted(self.queues))
        if found is None:
            raise TaskResultDoesNotExist(result_id)
        return _results.task_result(self.alias, *found)


def _delay(run_after: datetime | None) -> float | None:
    if run_after is None:
        return None
    return max(0.0, float((run_after - timezone.now()).total_seconds()))
