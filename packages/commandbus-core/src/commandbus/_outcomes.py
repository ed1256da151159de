"""Pure rules that turn a handler's return value or exception into a recorded outcome.

No I/O here: the worker executes the resulting rows with ``sql/queries/finish.sql``.
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from commandbus._channels import reply_channel
from commandbus._errors import (
    BusinessRuleError,
    ConfigurationError,
    HandlerError,
    PermanentCommandError,
    ValidationError,
)
from commandbus.models import Command, CommandStatus, ReplyOutcome
from commandbus.retry import RetryPolicy

__all__ = ["Lease", "Outcome", "finish_params", "outcome_for_error", "outcome_for_result"]


@dataclass(frozen=True, slots=True)
class Lease:
    """A command this worker holds: ownership is its ``lease_id``."""

    msg_id: int
    lease_id: int
    command: Command
    #: This lease's number: every lease of the command counts, even one that expired.
    attempt: int
    max_attempts: int
    #: Earlier leases that expired while other commands ran in the same worker (one of
    #: which may have killed it): they do not use up the attempt budget.
    forgiven: int = 0
    #: An operator's cancel request (operator, reason) found when leased: the command is
    #: recorded CANCELED without running.
    cancel_request: dict[str, Any] | None = None
    #: When the command last became deliverable (its send, scheduled time, retry's due
    #: time, an operator's retry or an expired lease), on ``time.monotonic()``'s clock:
    #: the start of its send-to-start latency. None if unknown.
    ready_since: float | None = None

    @property
    def counted_attempt(self) -> int:
        """The attempt as the budget sees it: ``attempt`` minus forgiven leases."""
        return self.attempt - self.forgiven


@dataclass(frozen=True, slots=True)
class Outcome:
    lease: Lease
    status: CommandStatus
    event_type: str
    details: dict[str, Any]
    result: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    retry_delay: float | None = None
    reply_outcome: ReplyOutcome | None = None


def outcome_for_result(lease: Lease, result: object) -> Outcome:
    """A handler returned: COMPLETED with its result, or a permanent error if unusable."""
    if result is not None and not isinstance(result, dict):
        return _troubleshoot(
            lease,
            "InvalidResult",
            "INVALID_RESULT",
            f"handler returned {type(result).__name__}; expected dict or None",
            None,
        )
    try:
        text = None if result is None else json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return _troubleshoot(
            lease,
            "InvalidResult",
            "INVALID_RESULT",
            f"result is not JSON-serialisable: {exc}",
            None,
        )
    if result is not None and not _storable_strings(result):
        return _troubleshoot(
            lease,
            "InvalidResult",
            "INVALID_RESULT",
            "result holds a string PostgreSQL cannot store (a NUL character or a lone surrogate)",
            None,
        )
    return Outcome(
        lease,
        CommandStatus.COMPLETED,
        "COMPLETED",
        {"attempt": lease.attempt},
        result=text,
        reply_outcome=ReplyOutcome.SUCCESS,
    )


#: Errors no retry can fix: declared permanent, or misuse of the library inside a
#: handler (an operator, or a deploy, must fix those).
_PERMANENT = (PermanentCommandError, ConfigurationError, ValidationError)


def outcome_for_error(lease: Lease, exc: BaseException, policy: RetryPolicy) -> Outcome:
    """Business rule → FAILED; permanent → troubleshooting; anything else → retry or TSQ."""
    code = _text(exc.code if isinstance(exc, HandlerError) else type(exc).__name__)
    message = _text(exc.message if isinstance(exc, HandlerError) else exc)
    tb = _text("".join(traceback.format_exception(exc)))
    error_type = _text(type(exc).__name__)
    if isinstance(exc, BusinessRuleError):
        return Outcome(
            lease,
            CommandStatus.FAILED,
            "FAILED",
            {**_storable(exc.details), "attempt": lease.attempt, "code": code, "message": message},
            error_type=error_type,
            error_code=code,
            error_message=message,
            reply_outcome=ReplyOutcome.FAILED,
        )
    if isinstance(exc, _PERMANENT) or lease.counted_attempt >= lease.max_attempts:
        return _troubleshoot(lease, error_type, code, message, tb)
    delay = policy.delay_after(lease.counted_attempt)
    return Outcome(
        lease,
        CommandStatus.PENDING,
        "RETRY_SCHEDULED",
        {
            "attempt": lease.attempt,
            "delay": delay,
            "error_type": error_type,
            "code": code,
            "message": message,
        },
        error_type=error_type,
        error_code=code,
        error_message=message,
        error_traceback=tb,
        retry_delay=delay,
    )


def outcome_for_cancel(lease: Lease, request: dict[str, Any]) -> Outcome:
    """An operator canceled the command while it ran (or before it ran again)."""
    operator, reason = request.get("operator"), _text(request.get("reason") or "canceled")
    return Outcome(
        lease,
        CommandStatus.CANCELED,
        "OPERATOR_CANCEL",
        {"operator": operator, "reason": reason, "attempt": lease.attempt},
        error_type="CommandCanceled",
        error_code="CANCELED",
        error_message=reason,
        reply_outcome=ReplyOutcome.CANCELED,
    )


def outcome_for_exhausted(lease: Lease) -> Outcome:
    """Leased more times than allowed (a poison message that kills or outlives workers)."""
    return _troubleshoot(
        lease,
        "AttemptsExhausted",
        "ATTEMPTS_EXHAUSTED",
        f"leased {lease.attempt} times with max_attempts={lease.max_attempts}: earlier attempts "
        "never finished (worker died or the handler overran its lease)"
        + (
            f"; {lease.forgiven} of them not counted (other commands ran beside them)"
            if lease.forgiven
            else ""
        ),
        None,
    )


def outcome_for_missing_handler(lease: Lease) -> Outcome:
    cmd = lease.command
    return _troubleshoot(
        lease,
        "HandlerNotFound",
        "NO_HANDLER",
        f"no handler registered for ({cmd.domain!r}, {cmd.command_type!r})",
        None,
    )


def _troubleshoot(
    lease: Lease, error_type: str, code: str, message: str, tb: str | None
) -> Outcome:
    return Outcome(
        lease,
        CommandStatus.IN_TROUBLESHOOTING_QUEUE,
        "MOVED_TO_TROUBLESHOOTING_QUEUE",
        {"attempt": lease.attempt, "error_type": error_type, "code": code, "message": message},
        error_type=error_type,
        error_code=code,
        error_message=message,
        error_traceback=tb,
    )


# Outcomes are recorded in batches: one value PostgreSQL rejects would fail the whole
# batch, so whatever comes from handlers is made storable here (or refused, for results).


def _text(value: object) -> str:
    """``str(value)`` as text PostgreSQL accepts: no NUL, no lone surrogates."""
    text = str(value).replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _storable(value: Any) -> Any:
    """A copy of ``value`` that serialises to JSON jsonb accepts (for audit details)."""
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {_text(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return _text(value)


def _storable_strings(value: Any) -> bool:
    """Whether every string (keys too) in a JSON-serialisable value fits in jsonb."""
    if isinstance(value, str):
        return _text(value) == value
    if isinstance(value, dict):
        return all(_storable_strings(k) and _storable_strings(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_storable_strings(v) for v in value)
    return True


def finish_params(
    outcomes: Sequence[Outcome], *, schema: str, domain: str, worker: str
) -> dict[str, Any]:
    """Column arrays for ``finish.sql``; one NOTIFY per reply queue that gets a reply."""
    channels = {
        reply_channel(schema, o.lease.command.reply_to)
        for o in outcomes
        if o.reply_outcome is not None and o.lease.command.reply_to
    }
    return {
        "domain": domain,
        "worker": worker,
        "command_id": [o.lease.command.command_id for o in outcomes],
        "lease_id": [o.lease.lease_id for o in outcomes],
        "status": [o.status.value for o in outcomes],
        "result": [o.result for o in outcomes],
        "error_type": [o.error_type for o in outcomes],
        "error_code": [o.error_code for o in outcomes],
        "error_message": [o.error_message for o in outcomes],
        "error_traceback": [o.error_traceback for o in outcomes],
        "retry_delay": [o.retry_delay for o in outcomes],
        "event_type": [o.event_type for o in outcomes],
        # A success writes no audit row (finish.sql): its details are never read.
        "details": [
            None if o.event_type == "COMPLETED" else json.dumps(o.details, default=str)
            for o in outcomes
        ],
        "reply_outcome": [
            None if o.reply_outcome is None else o.reply_outcome.value for o in outcomes
        ],
        "channels": sorted(channels),
    }
