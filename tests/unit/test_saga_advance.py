"""How a reply moves a process: the next step, compensations in reverse, the final status.

The order saga of ``core._sagas`` (RESERVE → CHARGE → SHIP; RELEASE and REFUND undo the
first two), driven through :func:`commandbus.process._advance.advance` alone.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, ProcessStatus, Reply, ReplyOutcome
from commandbus.process._advance import Snapshot, advance, ignore_reason
from core._sagas import OrderSaga, Step


@pytest.fixture
def saga() -> OrderSaga:
    # A pool that is never opened: the rules do no I/O.
    return OrderSaga(CommandBus(AsyncConnectionPool("", open=False)))


def snapshot(
    status: ProcessStatus = ProcessStatus.WAITING_FOR_REPLY,
    step: Step = Step.RESERVE,
    completed: list[str] | None = None,
    compensations: list[str] | None = None,
) -> Snapshot:
    return Snapshot(
        uuid.uuid4(),
        "orders",
        "order_fulfilment",
        status,
        step.value,
        uuid.uuid4(),
        {"order_id": "o-1", "amount": 5, "log": []},
        completed or [],
        compensations or [],
    )


def reply(snap: Snapshot, outcome: ReplyOutcome, **fields: Any) -> Reply:
    assert snap.current_command_id is not None
    return Reply(
        1,
        "order-replies",
        "orders",
        snap.current_command_id,
        "X",
        snap.process_id,
        outcome,
        **fields,
    )


def test_success_sends_the_next_step_and_the_last_one_completes(saga: OrderSaga) -> None:
    snap = snapshot(step=Step.RESERVE)
    moved = advance(saga, snap, reply(snap, ReplyOutcome.SUCCESS, result={"reservation": "r"}))
    assert moved.status == ProcessStatus.WAITING_FOR_REPLY
    assert moved.completed_steps == ["RESERVE"] and moved.entry_type == "STEP"
    assert moved.next is not None and moved.next.step == "CHARGE"
    assert moved.next.request.command_type == "ChargeCard"
    assert json.loads(moved.state_json)["reservation"] == "r"

    last = snapshot(step=Step.SHIP, completed=["RESERVE", "CHARGE"])
    done = advance(saga, last, reply(last, ReplyOutcome.SUCCESS))
    assert (done.status, done.next) == (ProcessStatus.COMPLETED, None)
    assert done.completed_steps == ["RESERVE", "CHARGE", "SHIP"]


def test_a_failure_compensates_the_completed_steps_in_reverse(saga: OrderSaga) -> None:
    snap = snapshot(step=Step.SHIP, completed=["RESERVE", "CHARGE"])
    moved = advance(saga, snap, reply(snap, ReplyOutcome.FAILED, error_code="NO_COURIER"))
    assert moved.status == ProcessStatus.COMPENSATING
    assert moved.next is not None and moved.next.step == "REFUND"
    assert moved.compensation_steps == ["RELEASE"] and moved.entry_type == "COMPENSATION"
    assert moved.error_code == "NO_COURIER"


@pytest.mark.parametrize(
    ("outcome", "final"),
    [(ReplyOutcome.FAILED, ProcessStatus.FAILED), (ReplyOutcome.CANCELED, ProcessStatus.CANCELED)],
)
def test_nothing_to_compensate_ends_the_process(
    saga: OrderSaga, outcome: ReplyOutcome, final: ProcessStatus
) -> None:
    snap = snapshot(step=Step.RESERVE)
    moved = advance(saga, snap, reply(snap, outcome))
    assert (moved.status, moved.next) == (final, None)
    assert moved.error_message == f"step RESERVE ended {outcome.value}"


def test_compensations_run_one_at_a_time_until_compensated(saga: OrderSaga) -> None:
    snap = snapshot(ProcessStatus.COMPENSATING, Step.REFUND, ["RESERVE", "CHARGE"], ["RELEASE"])
    moved = advance(saga, snap, reply(snap, ReplyOutcome.SUCCESS))
    assert moved.status == ProcessStatus.COMPENSATING
    assert moved.next is not None and moved.next.step == "RELEASE"
    assert moved.compensation_steps == []

    last = snapshot(ProcessStatus.COMPENSATING, Step.RELEASE, ["RESERVE", "CHARGE"], [])
    skipped = advance(saga, last, reply(last, ReplyOutcome.CANCELED))  # an operator skipped it
    assert skipped.status == ProcessStatus.COMPENSATED


def test_a_failed_compensation_fails_the_process_and_keeps_what_was_not_run(
    saga: OrderSaga,
) -> None:
    snap = snapshot(ProcessStatus.COMPENSATING, Step.REFUND, ["RESERVE", "CHARGE"], ["RELEASE"])
    moved = advance(saga, snap, reply(snap, ReplyOutcome.FAILED, error_message="card closed"))
    assert moved.status == ProcessStatus.FAILED
    assert moved.compensation_steps == ["RELEASE"]
    assert moved.error_code == "COMPENSATION_FAILED"
    assert moved.error_message == "compensation step REFUND failed: card closed"


def test_stale_replies_and_final_processes_are_ignored() -> None:
    snap = snapshot()
    assert ignore_reason(snap, reply(snap, ReplyOutcome.SUCCESS)) is None
    other = Reply(1, "q", "orders", uuid.uuid4(), "X", None, ReplyOutcome.SUCCESS)
    assert "stale or duplicate" in (ignore_reason(snap, other) or "")
    done = snapshot(ProcessStatus.COMPLETED)
    assert ignore_reason(done, reply(done, ReplyOutcome.SUCCESS)) == "process is COMPLETED"
