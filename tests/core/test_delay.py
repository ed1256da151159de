"""``delay``: a command becomes deliverable later (its row's ``vt``, while PENDING)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from commandbus import CommandBus, CommandStatus, SendRequest
from core._tables import Tables

pytestmark = pytest.mark.anyio  # the conftest marks async tests too late for parametrize


async def _visible_after(tables: Tables, command_id: uuid.UUID) -> tuple[timedelta, bool]:
    """How long after its send the command becomes deliverable, and whether it is now."""
    rows = await tables.rows("commands", command_id, columns="status, vt - created_at, vt <= now()")
    assert len(rows) == 1
    status, after, visible_now = rows[0]
    assert status == "PENDING"
    return after, visible_now


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        (30, timedelta(seconds=30)),
        (2.5, timedelta(seconds=2.5)),
        (timedelta(minutes=5), timedelta(minutes=5)),
        (timedelta(days=2, microseconds=7), timedelta(days=2, microseconds=7)),
    ],
)
async def test_a_delayed_command_becomes_visible_after_the_delay(
    bus: CommandBus, tables: Tables, delay: float | timedelta, expected: timedelta
) -> None:
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {}, delay=delay)

    after, visible_now = await _visible_after(tables, command_id)
    assert abs(after - expected) <= timedelta(microseconds=1)
    assert not visible_now
    cmd = await bus.get_command("payments", command_id)
    assert cmd is not None and cmd.status is CommandStatus.PENDING


@pytest.mark.parametrize("delay", [None, 0, 0.0, timedelta(0)])
async def test_no_delay_means_deliverable_now(
    bus: CommandBus, tables: Tables, delay: float | timedelta | None
) -> None:
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {}, delay=delay)

    assert await _visible_after(tables, command_id) == (timedelta(0), True)


async def test_each_request_of_a_batch_has_its_own_delay(bus: CommandBus, tables: Tables) -> None:
    now, later, much_later = (SendRequest("p", "T", uuid.uuid4(), {}) for _ in range(3))
    later = SendRequest("p", "T", later.command_id, {}, delay=60)
    much_later = SendRequest("p", "T", much_later.command_id, {}, delay=timedelta(hours=1))
    await bus.send_batch([now, later, much_later])

    assert await _visible_after(tables, now.command_id) == (timedelta(0), True)
    assert await _visible_after(tables, later.command_id) == (timedelta(seconds=60), False)
    assert await _visible_after(tables, much_later.command_id) == (timedelta(hours=1), False)
