"""The rules that turn a reply into a process's next status, state and command. No I/O.

Forward (WAITING_FOR_REPLY):
* SUCCESS: the step is completed; ``get_next_step`` gives the next one (its command is
  sent) or None (COMPLETED).
* FAILED (a business rule said no) or CANCELED (an operator canceled the command): the
  compensation steps of the completed steps run in reverse order (COMPENSATING), or,
  when there is nothing to compensate, the process ends FAILED or CANCELED.

Compensating (COMPENSATING), one compensation command at a time:
* SUCCESS, or CANCELED (an operator chose to skip that compensation): the next
  compensation step, or COMPENSATED after the last.
* FAILED: the process ends FAILED; the compensations not run stay listed.

``update_state`` sees every applied reply, whatever its outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from commandbus.models import Reply, ReplyOutcome
from commandbus.process.manager import BaseProcessManager, PlannedCommand
from commandbus.process.models import ProcessStatus

__all__ = ["Snapshot", "Transition", "advance", "ignore_reason"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The locked process row, in the column order of ``process_lock.sql``."""

    process_id: uuid.UUID
    domain: str
    process_type: str
    status: ProcessStatus
    current_step: str | None
    current_command_id: uuid.UUID | None
    state: dict[str, Any]
    completed_steps: list[str]
    compensation_steps: list[str]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Snapshot:
        return cls(
            row[0],
            row[1],
            row[2],
            ProcessStatus(row[3]),
            row[4],
            row[5],
            row[6],
            list(row[7]),
            list(row[8]),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    status: ProcessStatus
    state_json: str
    completed_steps: list[str]
    compensation_steps: list[str]
    #: The command to send next (its audit entry type: STEP or COMPENSATION).
    next: PlannedCommand | None = None
    entry_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None


def ignore_reason(snap: Snapshot, reply: Reply) -> str | None:
    """Why ``reply`` must not advance the process, or None if it applies."""
    if snap.status.is_final:
        return f"process is {snap.status.value}"
    if reply.command_id != snap.current_command_id:
        return (
            f"reply to command {reply.command_id}, but the process waits for "
            f"{snap.current_command_id} (stale or duplicate reply)"
        )
    return None


def advance(manager: BaseProcessManager[Any, Any], snap: Snapshot, reply: Reply) -> Transition:
    """The transition of a process whose current command got ``reply``."""
    assert snap.current_step is not None
    step = manager.step_from_str(snap.current_step)
    state = manager.update_state(manager.state_from_dict(snap.state), step, reply)
    if snap.status == ProcessStatus.COMPENSATING:
        return _after_compensation(manager, snap, reply, state)
    if reply.outcome == ReplyOutcome.SUCCESS:
        completed = [*snap.completed_steps, snap.current_step]
        nxt = manager.get_next_step(step, reply, state)
        if nxt is None:
            return Transition(ProcessStatus.COMPLETED, manager.dump_state(state), completed, [])
        return Transition(
            ProcessStatus.WAITING_FOR_REPLY,
            manager.dump_state(state),
            completed,
            [],
            next=manager.plan(nxt, state, snap.process_id),
            entry_type="STEP",
        )
    compensations = []
    for done in reversed(snap.completed_steps):
        undo = manager.get_compensation_step(manager.step_from_str(done))
        if undo is not None:
            compensations.append(undo)
    code = reply.error_code or reply.outcome.value
    message = reply.error_message or f"step {snap.current_step} ended {reply.outcome.value}"
    if not compensations:
        final = (
            ProcessStatus.FAILED if reply.outcome == ReplyOutcome.FAILED else ProcessStatus.CANCELED
        )
        return Transition(
            final,
            manager.dump_state(state),
            snap.completed_steps,
            [],
            error_code=code,
            error_message=message,
        )
    return Transition(
        ProcessStatus.COMPENSATING,
        manager.dump_state(state),
        snap.completed_steps,
        [manager.step_to_str(s) for s in compensations[1:]],
        next=manager.plan(compensations[0], state, snap.process_id),
        entry_type="COMPENSATION",
        error_code=code,
        error_message=message,
    )


def _after_compensation(
    manager: BaseProcessManager[Any, Any], snap: Snapshot, reply: Reply, state: Any
) -> Transition:
    state_json = manager.dump_state(state)
    if reply.outcome == ReplyOutcome.FAILED:
        return Transition(
            ProcessStatus.FAILED,
            state_json,
            snap.completed_steps,
            snap.compensation_steps,
            error_code=reply.error_code or "COMPENSATION_FAILED",
            error_message=(
                f"compensation step {snap.current_step} failed: "
                f"{reply.error_message or reply.outcome.value}"
            ),
        )
    if not snap.compensation_steps:
        return Transition(ProcessStatus.COMPENSATED, state_json, snap.completed_steps, [])
    following, *rest = snap.compensation_steps
    return Transition(
        ProcessStatus.COMPENSATING,
        state_json,
        snap.completed_steps,
        rest,
        next=manager.plan(manager.step_from_str(following), state, snap.process_id),
        entry_type="COMPENSATION",
    )
