"""Value objects of process managers: what the repository returns and managers build."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from commandbus.models import CommandStatus, ReplyOutcome

__all__ = [
    "ParkedReply",
    "ProcessAuditEntry",
    "ProcessCommand",
    "ProcessInfo",
    "ProcessStatus",
]


class ProcessStatus(StrEnum):
    """Where a process stands.

    Stored: WAITING_FOR_REPLY (its current command is outstanding), COMPENSATING (undoing
    completed steps, a compensation command outstanding), and the final COMPLETED,
    COMPENSATED, FAILED, CANCELED. Derived when read: WAITING_FOR_TSQ, a process waiting
    for a reply whose command is in the troubleshooting queue (or whose reply was parked).
    PENDING and IN_PROGRESS are never observable with this implementation: ``start``
    creates the process and sends its first command atomically, and a reply is applied
    in one transaction.
    """

    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    WAITING_FOR_REPLY = "WAITING_FOR_REPLY"
    WAITING_FOR_TSQ = "WAITING_FOR_TSQ"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {
        ProcessStatus.COMPLETED,
        ProcessStatus.COMPENSATED,
        ProcessStatus.FAILED,
        ProcessStatus.CANCELED,
    }
)


@dataclass(frozen=True, slots=True)
class ProcessCommand:
    """The command a step sends. ``domain`` defaults to the manager's domain."""

    command_type: str
    data: dict[str, Any]
    domain: str | None = None
    max_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A process as stored, with its derived status. ``state`` is the stored JSON."""

    process_id: uuid.UUID
    domain: str
    process_type: str
    status: ProcessStatus
    current_step: str | None
    current_command_domain: str | None
    current_command_id: uuid.UUID | None
    #: Status of the current command; a finished process keeps its last step and command.
    current_command_status: CommandStatus | None
    state: dict[str, Any]
    completed_steps: list[str]
    compensation_steps: list[str]
    error_code: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class ProcessAuditEntry:
    """One command a process sent with the reply it got, or one reply it did not apply.

    ``entry_type``: STEP, COMPENSATION (a command and, once received, its reply), or
    IGNORED_REPLY / PARKED_REPLY (a reply not applied; ``note`` says why).
    """

    seq: int
    process_id: uuid.UUID
    entry_type: str
    step: str | None
    command_domain: str | None
    command_id: uuid.UUID | None
    command_type: str | None
    command_data: dict[str, Any] | None
    sent_at: datetime | None
    reply_outcome: ReplyOutcome | None
    reply_data: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    received_at: datetime | None
    note: str | None


@dataclass(frozen=True, slots=True)
class ParkedReply:
    """A reply the router set aside for an operator instead of retrying it forever."""

    parked_id: int
    queue: str
    domain: str
    command_id: uuid.UUID
    command_type: str
    correlation_id: uuid.UUID | None
    outcome: ReplyOutcome
    result: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    read_count: int
    enqueued_at: datetime | None
    #: UNKNOWN_PROCESS, UNKNOWN_PROCESS_TYPE, HANDLING_FAILED or ATTEMPTS_EXHAUSTED.
    reason_code: str
    reason: str
    traceback: str | None
    parked_at: datetime
