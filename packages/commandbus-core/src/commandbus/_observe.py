"""What a worker tells about each recorded outcome: one log record and, for hooks, one
:class:`~commandbus.hooks.HandlerFinished` event. Written once, used by every path that
records outcomes (batched, or in a handler's own transaction)."""

from __future__ import annotations

import logging
import time
from typing import Any

from commandbus._outcomes import Lease, Outcome
from commandbus.hooks import HandlerFinished, HandlerStarted

__all__ = ["finished_event", "log_outcome", "started_event"]

log = logging.getLogger("commandbus.worker")


def _fields(outcome: Outcome, worker: str) -> dict[str, Any]:
    """The ``extra`` of every record about a command (for JSON log formatters)."""
    command = outcome.lease.command
    return {
        "domain": command.domain,
        "command_type": command.command_type,
        "command_id": str(command.command_id),
        "attempt": outcome.lease.attempt,
        "worker": worker,
        "outcome": outcome.event_type,
        "error_type": outcome.error_type,
        "error_code": outcome.error_code,
    }


def log_outcome(outcome: Outcome, worker: str) -> None:
    """DEBUG for a success (nothing per success at INFO), INFO for a business-rule
    failure, WARNING for a retried failure, ERROR with the traceback for a command moved
    to the troubleshooting queue."""
    event = outcome.event_type
    level = _LEVELS[event]
    if not log.isEnabledFor(level):
        return
    command = outcome.lease.command
    what = f"command {command.command_id} ({command.domain}/{command.command_type})"
    attempt = f"attempt {outcome.lease.attempt} of {outcome.lease.max_attempts}"
    error = f"{outcome.error_type} {outcome.error_code}: {outcome.error_message}"
    if event == "COMPLETED":
        message = f"{what} completed ({attempt})"
    elif event == "FAILED":
        message = f"{what} failed, a business rule said no ({attempt}): {error}"
    elif event == "RETRY_SCHEDULED":
        message = f"{what} {attempt} failed ({error}); retrying in {outcome.retry_delay:g} s"
    elif event == "OPERATOR_CANCEL":
        message = f"{what} canceled by {outcome.details.get('operator')} ({attempt}): "
        message += str(outcome.error_message)
    else:
        message = f"{what} moved to the troubleshooting queue after {attempt}: {error}"
        if outcome.error_traceback:
            message += "\n" + outcome.error_traceback.rstrip()
    log.log(level, message, extra=_fields(outcome, worker))


_LEVELS = {
    "COMPLETED": logging.DEBUG,
    "FAILED": logging.INFO,
    "RETRY_SCHEDULED": logging.WARNING,
    "MOVED_TO_TROUBLESHOOTING_QUEUE": logging.ERROR,
    "OPERATOR_CANCEL": logging.INFO,
}


def started_event(lease: Lease, worker: str) -> HandlerStarted:
    """``waited`` counts from when the command last became deliverable (the dequeue
    reports how long it had been, by the database's clock; the time since the lease is
    added by this process's monotonic clock): not a scheduled delay, a retry's backoff,
    nor time parked before an operator's retry."""
    command = lease.command
    if lease.ready_since is not None:
        waited = time.monotonic() - lease.ready_since
    elif command.created_at is not None:
        waited = time.time() - command.created_at.timestamp()
    else:
        waited = 0.0
    return HandlerStarted(
        command.domain,
        command.command_type,
        command.command_id,
        lease.attempt,
        worker,
        max(0.0, waited),
    )


def finished_event(outcome: Outcome, worker: str, duration: float) -> HandlerFinished:
    command = outcome.lease.command
    return HandlerFinished(
        command.domain,
        command.command_type,
        command.command_id,
        outcome.lease.attempt,
        worker,
        outcome.event_type,
        duration,
        outcome.error_type,
        outcome.error_code,
        outcome.retry_delay,
    )
