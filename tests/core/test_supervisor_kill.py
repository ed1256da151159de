"""The supervisor's log on a forced stop: one line per child it kills, however many times
its loop turns before the child is gone (pure logic, with stand-in children)."""

from __future__ import annotations

import time

import pytest

from commandbus.cli._supervisor import Slot, Supervisor


class DyingChild:
    """A child process already sent SIGKILL, still alive for a few of the supervisor's
    steps (the kernel takes its time; another child's exit wakes the loop meanwhile)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.kills = 0

    def poll(self) -> int | None:
        return None

    def kill(self) -> None:
        self.kills += 1


def test_a_child_that_does_not_stop_is_killed_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = Supervisor([Slot("orders", 1, 0), Slot("orders", 1, 1)], ["true"], force_grace=0)
    children = [DyingChild(4242), DyingChild(4343)]
    sup.children = dict(enumerate(children))  # type: ignore[arg-type]
    sup._stopping, sup._forced_at = True, time.monotonic() - 1

    with caplog.at_level("WARNING", logger="commandbus.supervisor"):
        for _ in range(3):
            assert sup._step()  # still waiting for them to die

    assert [child.kills for child in children] == [1, 1]
    assert [r.getMessage() for r in caplog.records] == [
        "worker process 4242 did not stop: killing it",
        "worker process 4343 did not stop: killing it",
    ]
