"""A command's state as Django's ``TaskResult``: status, attempts and their workers,
errors with tracebacks, the return value."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.utils.module_loading import import_string

import commandbus
from commandbus import AuditEvent, CommandBus, CommandStatus
from commandbus.console import CommandDetail, command_detail, find_commands
from commandbus_django._compat import (
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    set_field,
)

__all__ = ["TASK_RAISED", "read", "task_result"]

#: ``error_type`` of a task's own exception (see commandbus_django._execution): its
#: ``code`` is the exception's import path.
TASK_RAISED = "TaskRaised"

_STATUS = {
    CommandStatus.PENDING: TaskResultStatus.READY,
    CommandStatus.IN_PROGRESS: TaskResultStatus.RUNNING,
    CommandStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    CommandStatus.FAILED: TaskResultStatus.FAILED,
    CommandStatus.CANCELED: TaskResultStatus.FAILED,
    CommandStatus.IN_TROUBLESHOOTING_QUEUE: TaskResultStatus.FAILED,
}
#: Audit events that end an attempt with an error.
_FAILURES = {"RETRY_SCHEDULED", "MOVED_TO_TROUBLESHOOTING_QUEUE", "FAILED"}


async def read(
    bus: CommandBus, command_id: uuid.UUID, queues: Sequence[str]
) -> tuple[CommandDetail, list[AuditEvent]] | None:
    """The command (with its last traceback) and its audit trail; None if unknown. The
    backend's queues are tried in turn; a backend open to any queue searches by id."""
    detail = None
    for queue in queues:
        detail = await command_detail(bus.pool, queue, command_id, schema=bus.schema)
        if detail is not None:
            break
    if detail is None and not queues:
        page = await find_commands(bus.pool, command_id=command_id, schema=bus.schema, limit=1)
        if page.items:
            domain = page.items[0].domain
            detail = await command_detail(bus.pool, domain, command_id, schema=bus.schema)
    if detail is None:
        return None
    return detail, await bus.get_audit_trail(command_id, domain=detail.command.domain)


def task_result(alias: str, detail: CommandDetail, trail: list[AuditEvent]) -> Any:
    meta = detail.command
    try:
        task = import_string(meta.command_type)
    except ImportError as exc:
        raise TaskResultDoesNotExist(
            f"{meta.command_id}: its task {meta.command_type!r} cannot be imported ({exc})"
        ) from None
    priority = meta.data.get("priority")
    task = task.using(
        queue_name=meta.domain, **({"priority": priority} if isinstance(priority, int) else {})
    )
    received = [event for event in trail if event.event_type == "RECEIVED"]
    status = _STATUS[meta.status]
    result = TaskResult(
        task=task,
        id=str(meta.command_id),
        status=status,
        enqueued_at=meta.created_at,
        started_at=received[0].created_at if received else None,
        finished_at=meta.updated_at
        if status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
        else None,
        last_attempted_at=received[-1].created_at if received else None,
        args=meta.data.get("args", []),
        kwargs=meta.data.get("kwargs", {}),
        backend=alias,
        errors=_errors(trail, detail.traceback),
        worker_ids=[str(event.details.get("worker") or "") for event in received],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        set_field(result, "_return_value", (meta.result or {}).get("return_value"))
    return result


def _errors(trail: list[AuditEvent], last_traceback: str | None) -> list[Any]:
    """One TaskError per failed attempt; the last carries the stored traceback (earlier
    ones their error's type and message: commandbus keeps the last traceback only)."""
    failures = [event for event in trail if event.event_type in _FAILURES]
    errors = []
    for index, event in enumerate(failures):
        path = _exception_path(event)
        message = str(event.details.get("message") or "")
        traceback = f"{path}: {message}"
        if index == len(failures) - 1 and last_traceback:
            traceback = last_traceback
        errors.append(TaskError(exception_class_path=path, traceback=traceback))
    return errors


def _exception_path(event: AuditEvent) -> str:
    error_type = str(event.details.get("error_type") or "")
    code = str(event.details.get("code") or "")
    if error_type == TASK_RAISED and code:
        return code
    if event.event_type == "FAILED":
        return "commandbus.BusinessRuleError"
    if hasattr(commandbus, error_type):
        return f"commandbus.{error_type}"
    return error_type or "builtins.Exception"
