"""How a handler's return value or exception becomes the outcome the worker records."""

from __future__ import annotations

import json
import uuid

import pytest

from commandbus import (
    BusinessRuleError,
    CommandStatus,
    PermanentCommandError,
    ReplyOutcome,
    RetryPolicy,
    TransientCommandError,
    ValidationError,
)
from commandbus._outcomes import (
    Lease,
    finish_params,
    outcome_for_cancel,
    outcome_for_error,
    outcome_for_exhausted,
    outcome_for_missing_handler,
    outcome_for_result,
)
from commandbus.models import Command

POLICY = RetryPolicy(backoff=(10, 60))


def lease(
    attempt: int = 1, max_attempts: int = 3, *, forgiven: int = 0, **command: object
) -> Lease:
    fields: dict[str, object] = {"domain": "payments", "command_type": "Charge"}
    fields.update(command_id=uuid.uuid4(), data={}, **command)
    return Lease(7, 70 + attempt, Command(**fields), attempt, max_attempts, forgiven)  # type: ignore[arg-type]


def test_a_dict_or_none_completes_with_the_result_as_json() -> None:
    done = outcome_for_result(lease(), {"charged": 42})
    assert (done.status, done.event_type, done.reply_outcome) == (
        CommandStatus.COMPLETED,
        "COMPLETED",
        ReplyOutcome.SUCCESS,
    )
    assert json.loads(done.result or "") == {"charged": 42}
    assert outcome_for_result(lease(), None).result is None


@pytest.mark.parametrize(
    "result",
    [[1, 2], "text", 5, {"nan": float("nan")}, {"x": object()}, {"nul": "a\x00b"}, {"s": "\udc80"}],
    ids=["list", "str", "int", "nan", "object", "nul", "surrogate"],
)
def test_a_result_that_cannot_be_stored_parks_the_command(result: object) -> None:
    parked = outcome_for_result(lease(), result)
    assert parked.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE
    assert parked.error_code == "INVALID_RESULT" and parked.result is None


def test_a_business_rule_fails_the_command_with_its_details_and_no_retry() -> None:
    failed = outcome_for_error(
        lease(), BusinessRuleError("NO_FUNDS", "balance too low", details={"gap": 5}), POLICY
    )
    assert (failed.status, failed.reply_outcome) == (CommandStatus.FAILED, ReplyOutcome.FAILED)
    assert failed.details == {
        "gap": 5,
        "attempt": 1,
        "code": "NO_FUNDS",
        "message": "balance too low",
    }
    assert failed.retry_delay is None


def test_a_transient_error_is_retried_after_the_policys_delay_until_the_last_attempt() -> None:
    first = outcome_for_error(lease(1), TransientCommandError("BUSY", "later"), POLICY)
    second = outcome_for_error(lease(2), TransientCommandError("BUSY", "later"), POLICY)
    last = outcome_for_error(lease(3), TransientCommandError("BUSY", "later"), POLICY)
    assert (first.status, first.event_type, first.retry_delay) == (
        CommandStatus.PENDING,
        "RETRY_SCHEDULED",
        10,
    )
    assert second.retry_delay == 60
    assert last.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE
    assert last.error_code == "BUSY" and "TransientCommandError" in (last.error_traceback or "")


def test_forgiven_leases_do_not_use_up_the_attempt_budget() -> None:
    retried = outcome_for_error(lease(3, forgiven=1), RuntimeError("boom"), POLICY)
    assert retried.status == CommandStatus.PENDING and retried.retry_delay == 60
    assert retried.error_code == "RuntimeError"


@pytest.mark.parametrize(
    "error",
    [PermanentCommandError("GONE", "never"), ValidationError("data", "bad")],
    ids=["permanent", "library misuse"],
)
def test_errors_no_retry_can_fix_park_the_command_at_once(error: Exception) -> None:
    parked = outcome_for_error(lease(1), error, POLICY)
    assert parked.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE
    assert parked.event_type == "MOVED_TO_TROUBLESHOOTING_QUEUE"


def test_error_text_is_made_storable() -> None:
    parked = outcome_for_error(lease(3), RuntimeError("nul\x00 and \udc80"), POLICY)
    for text in (parked.error_message, parked.error_traceback):
        assert text is not None and "\x00" not in text
        text.encode("utf-8")  # no lone surrogate left


def test_cancel_exhausted_and_missing_handler_outcomes() -> None:
    canceled = outcome_for_cancel(lease(), {"operator": "ada", "reason": "duplicate order"})
    assert (canceled.status, canceled.reply_outcome) == (
        CommandStatus.CANCELED,
        ReplyOutcome.CANCELED,
    )
    assert canceled.details["operator"] == "ada" and canceled.error_message == "duplicate order"
    exhausted = outcome_for_exhausted(lease(4, 3, forgiven=1))
    assert exhausted.error_code == "ATTEMPTS_EXHAUSTED"
    assert "1 of them not counted" in (exhausted.error_message or "")
    missing = outcome_for_missing_handler(lease())
    assert missing.error_code == "NO_HANDLER" and "'Charge'" in (missing.error_message or "")


def test_finish_params_are_column_arrays_with_one_channel_per_reply_queue() -> None:
    with_reply = lease(reply_to="order-replies")
    outcomes = [
        outcome_for_result(with_reply, {"ok": True}),
        outcome_for_error(lease(reply_to="order-replies"), BusinessRuleError("NO", "no"), POLICY),
        outcome_for_error(lease(), RuntimeError("again"), POLICY),  # a retry: no reply
    ]
    params = finish_params(outcomes, schema="cb", domain="payments", worker="w1")
    assert params["command_id"] == [o.lease.command.command_id for o in outcomes]
    assert params["status"] == ["COMPLETED", "FAILED", "PENDING"]
    assert params["reply_outcome"] == ["SUCCESS", "FAILED", None]
    assert len(params["channels"]) == 1
    # A success writes no audit row: its details are not sent.
    assert params["details"][0] is None
    assert [json.loads(d)["attempt"] for d in params["details"][1:]] == [1, 1]
