"""Value objects that cross the public boundary: frozen, typed, cheap to build."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

__all__ = [
    "AuditEvent",
    "BatchCommand",
    "BatchInfo",
    "BatchResult",
    "BatchStatus",
    "Command",
    "CommandMetadata",
    "CommandStatus",
    "HealthCheck",
    "HealthReport",
    "Reply",
    "ReplyOutcome",
    "SendRequest",
    "SendResult",
    "TroubleshootingItem",
    "WorkerInfo",
]


class CommandStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    IN_TROUBLESHOOTING_QUEUE = "IN_TROUBLESHOOTING_QUEUE"


class ReplyOutcome(StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One command to send; the bulk path (:meth:`CommandBus.send_batch`) takes many."""

    domain: str
    command_type: str
    command_id: uuid.UUID
    data: dict[str, Any]
    correlation_id: uuid.UUID | None = None
    reply_to: str | None = None
    max_attempts: int | None = None
    delay: float | timedelta | None = None
    #: 0 (the default) runs first, 9 last; among equal priorities, the earliest due first.
    priority: int = 0


@dataclass(frozen=True, slots=True)
class SendResult:
    command_id: uuid.UUID
    msg_id: int


@dataclass(frozen=True, slots=True)
class Command:
    """What a handler receives."""

    domain: str
    command_type: str
    command_id: uuid.UUID
    data: dict[str, Any]
    correlation_id: uuid.UUID | None = None
    reply_to: str | None = None
    batch_id: uuid.UUID | None = None
    created_at: datetime | None = None
    #: Propagation headers of the trace the command was sent in (see commandbus.otel),
    #: None unless tracing is on.
    trace_context: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CommandMetadata:
    """The system-of-record view of a command."""

    domain: str
    command_id: uuid.UUID
    command_type: str
    status: CommandStatus
    attempts: int
    max_attempts: int
    data: dict[str, Any]
    correlation_id: uuid.UUID | None
    reply_to: str | None
    batch_id: uuid.UUID | None
    result: dict[str, Any] | None
    last_error_type: str | None
    last_error_code: str | None
    last_error_message: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEvent:
    audit_id: int
    domain: str
    command_id: uuid.UUID
    event_type: str
    details: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Reply:
    """The outcome of a command, delivered to the queue named in its ``reply_to``."""

    msg_id: int
    queue: str
    domain: str
    command_id: uuid.UUID
    command_type: str
    correlation_id: uuid.UUID | None
    outcome: ReplyOutcome
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    read_count: int = 1
    created_at: datetime | None = None
    #: Propagation headers of the trace the command was sent in (see commandbus.otel),
    #: None unless tracing is on.
    trace_context: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class TroubleshootingItem:
    domain: str
    command_id: uuid.UUID
    command_type: str
    data: dict[str, Any]
    attempts: int
    max_attempts: int
    last_error_type: str | None
    last_error_code: str | None
    last_error_message: str | None
    last_error_traceback: str | None
    correlation_id: uuid.UUID | None
    reply_to: str | None
    batch_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


class BatchStatus(StrEnum):
    """Derived from the batch's commands, never stored.

    PENDING: every command waits for delivery. IN_PROGRESS: some work started or is
    done, but commands are still pending, running or in the troubleshooting queue.
    COMPLETED: every command COMPLETED. COMPLETED_WITH_FAILURES: all finished, some
    FAILED or CANCELED. The last two are terminal: nothing can change them again.
    """

    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_FAILURES = "COMPLETED_WITH_FAILURES"

    @property
    def is_terminal(self) -> bool:
        return self in (BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_FAILURES)


@dataclass(frozen=True, slots=True)
class BatchCommand:
    """One command of a batch; it takes the batch's domain.

    :meth:`CommandBus.create_batch` also accepts :class:`SendRequest` (for ``delay``),
    whose domain must then be the batch's domain.
    """

    command_type: str
    command_id: uuid.UUID
    data: dict[str, Any]
    correlation_id: uuid.UUID | None = None
    reply_to: str | None = None
    max_attempts: int | None = None
    priority: int = 0


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What :meth:`CommandBus.create_batch` wrote: the batch and one result per command."""

    batch_id: uuid.UUID
    domain: str
    total: int
    results: list[SendResult]


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A batch with counters counted from its commands at the time of the read."""

    batch_id: uuid.UUID
    domain: str
    name: str | None
    custom_data: dict[str, Any] | None
    total: int
    pending: int
    in_progress: int
    completed: int
    failed: int
    canceled: int
    in_troubleshooting: int
    status: BatchStatus
    created_at: datetime
    #: When the last command finished; None while the batch is not terminal.
    completed_at: datetime | None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One row of the worker registry: a running (or lost) Worker or ProcessReplyRouter."""

    #: ``Worker.name``, ``host:pid:hex``; a router's is built the same way.
    id: str
    #: ``"worker"`` or ``"router"``.
    kind: str
    host: str
    pid: int
    #: The domain a worker serves, or the reply queue a router reads.
    domain: str
    concurrency: int
    #: The ``commandbus-core`` version it runs.
    version: str
    #: Commands (replies, for a router) leased and not finished at the last heartbeat.
    in_flight: int
    #: Seconds between its heartbeats.
    heartbeat_interval: float
    started_at: datetime
    heartbeat_at: datetime
    #: Seconds since the last heartbeat, by the database's clock.
    heartbeat_age: float
    #: No heartbeat for three intervals: killed hard, hung, or cut off from the database.
    stale: bool


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One line of a :class:`HealthReport`."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What :func:`commandbus.check_health` found; healthy when every check passed."""

    checks: list[HealthCheck]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def failed(self) -> list[HealthCheck]:
        return [check for check in self.checks if not check.ok]
