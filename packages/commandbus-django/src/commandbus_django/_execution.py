"""Running a task in a commandbus worker: the handler each task gets, and the registry
of a backend's tasks that workers serve.

The handler rebuilds the task's ``TaskResult`` (for ``takes_context`` and the signals),
sends ``task_started``, calls the function, and sends ``task_finished`` once the outcome
is final (a success, or a failure with no attempt left). A task's own exception becomes
:class:`TaskRaised`, a transient error retried with the workers' backoff, whose ``code``
is the exception's import path; the commandbus errors a task may raise on purpose
(``BusinessRuleError``: FAILED at once; ``PermanentCommandError``: the troubleshooting
queue at once) pass through unchanged.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import traceback
from typing import Any, NoReturn

from django.db import close_old_connections
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules, import_string

from commandbus import (
    Command,
    HandlerContext,
    HandlerError,
    HandlerRegistry,
    TransientCommandError,
)
from commandbus_django import _compat
from commandbus_django._compat import TaskContext, TaskError, TaskResult, TaskResultStatus
from commandbus_django._results import TASK_RAISED

__all__ = ["TaskRaised", "TaskRegistry", "WORKER_ID", "task_handler"]

log = logging.getLogger("commandbus_django")

#: This process, as ``TaskResult.worker_ids`` names it while a task runs.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class TaskRaised(TransientCommandError):
    """A task's own exception, retried with backoff; ``code`` is its import path."""

    def __init__(self, exc: BaseException) -> None:
        kind = type(exc)
        super().__init__(f"{kind.__module__}.{kind.__qualname__}", str(exc))


assert TaskRaised.__name__ == TASK_RAISED


def task_handler(task: Any) -> Any:
    """The commandbus handler of ``task``: a plain ``def`` (run in the worker's threads)
    for a plain function, an ``async def`` for a coroutine function."""
    if inspect.iscoroutinefunction(task.func):

        async def run_async(command: Command, ctx: HandlerContext) -> dict[str, Any]:
            result, call_args = _start(task, command, ctx)
            try:
                value = await task.func(*call_args, **result.kwargs)
            except Exception as exc:
                _raise_failure(result, exc, ctx)
            return _succeeded(result, value)

        return run_async

    def run_sync(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        close_old_connections()  # as Django does around a request
        try:
            result, call_args = _start(task, command, ctx)
            try:
                value = task.func(*call_args, **result.kwargs)
            except Exception as exc:
                _raise_failure(result, exc, ctx)
            return _succeeded(result, value)
        finally:
            close_old_connections()

    return run_sync


def _start(task: Any, command: Command, ctx: HandlerContext) -> tuple[Any, list[Any]]:
    now = timezone.now()
    data = command.data
    if task.queue_name != command.domain:
        task = task.using(queue_name=command.domain)
    result = TaskResult(
        task=task,
        id=str(command.command_id),
        status=TaskResultStatus.RUNNING,
        enqueued_at=command.created_at,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=data.get("args", []),
        kwargs=data.get("kwargs", {}),
        backend=task.backend,
        errors=[],
        worker_ids=[WORKER_ID] * ctx.attempt,
    )
    _compat.task_started.send(type(task.get_backend()), task_result=result)
    call_args = list(result.args)
    if task.takes_context:
        call_args.insert(0, TaskContext(task_result=result))
    return result, call_args


def _succeeded(result: Any, value: Any) -> dict[str, Any]:
    value = _compat.normalize_json(value)  # what is not JSON fails the task here
    _compat.set_field(result, "_return_value", value)
    _compat.set_field(result, "finished_at", timezone.now())
    _compat.set_field(result, "status", TaskResultStatus.SUCCESSFUL)
    _compat.task_finished.send(type(result.task.get_backend()), task_result=result)
    return {"return_value": value}


def _raise_failure(result: Any, exc: Exception, ctx: HandlerContext) -> NoReturn:
    """Record the error on ``result``, send ``task_finished`` if no attempt is left, and
    raise what the worker should see."""
    kind = type(exc)
    result.errors.append(
        TaskError(
            exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
            traceback="".join(traceback.format_exception(exc)),
        )
    )
    final = ctx.is_last_attempt or (
        isinstance(exc, HandlerError) and not isinstance(exc, TransientCommandError)
    )
    if final:
        _compat.set_field(result, "finished_at", timezone.now())
        _compat.set_field(result, "status", TaskResultStatus.FAILED)
        _compat.task_finished.send(type(result.task.get_backend()), task_result=result)
    else:
        _compat.set_field(result, "status", TaskResultStatus.READY)
    if isinstance(exc, HandlerError):
        raise exc
    raise TaskRaised(exc) from exc


class TaskRegistry(HandlerRegistry):
    """The handlers of one backend's tasks, for workers of its queues.

    Every task imported by then is registered for every queue served, with its own
    ``timeout`` and ``max_running`` (the apps' ``tasks`` modules are imported first, as
    Django's admin does with ``admin`` modules). A task found later, by its import path
    when a command of it arrives, is registered then (without ``max_running``: limits are
    declared when a worker starts).
    """

    def __init__(self, alias: str, queues: list[str], *, timeout: float | None = None) -> None:
        super().__init__()
        self.alias = alias
        self.queues = list(queues)
        self.default_timeout = timeout
        autodiscover_modules("tasks")
        from commandbus_django.backend import declared_tasks

        for path, task in sorted(declared_tasks(alias).items()):
            for queue in self.queues:
                self._add(queue, path, task, with_limit=True)

    def _add(self, queue: str, path: str, task: Any, *, with_limit: bool) -> Any:
        handler = task_handler(task)
        timeout = getattr(task, "timeout", None) or self.default_timeout
        limit = getattr(task, "max_running", None) if with_limit else None
        self.register(queue, path, handler, timeout=timeout, max_running=limit)
        return handler

    def get(self, domain: str, command_type: str) -> Any:
        found = super().get(domain, command_type)
        if found is not None or domain not in self.queues:
            return found
        try:
            task = import_string(command_type)
        except ImportError:
            log.error("task %s of queue %s cannot be imported", command_type, domain)
            return None
        if not hasattr(task, "func") or getattr(task, "backend", None) != self.alias:
            log.error("%s is not a task of backend %r", command_type, self.alias)
            return None
        return self._add(domain, command_type, task, with_limit=False)

    def domains(self) -> set[str]:
        return set(self.queues) | super().domains()
