"""Priorities: from a full queue, smaller priorities run first, then the earliest due,
then the first sent. Bad priorities are refused before anything is written."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BatchCommand,
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    SendRequest,
    ValidationError,
)
from core._tables import Tables
from core.helpers import DOMAIN, make_worker, running, wait_for_count

pytestmark = pytest.mark.anyio  # the conftest marks async tests too late for parametrize


async def _run_in_order(pool: AsyncConnectionPool, schema: str, n: int) -> list[uuid.UUID]:
    """Run every queued command with one handler at a time; the order they ran in."""
    order: list[uuid.UUID] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Job")
    async def record(command: Command, ctx: HandlerContext) -> None:
        order.append(command.command_id)

    async with running(make_worker(pool, schema, registry, concurrency=1)):
        await wait_for_count(pool, schema, CommandStatus.COMPLETED, n)
    return order


async def test_a_full_queue_runs_by_priority_then_send_order(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    sent: list[tuple[int, int, uuid.UUID]] = []
    requests = []
    for position in range(60):
        priority = random.randint(0, 9)
        request = SendRequest(DOMAIN, "Job", uuid.uuid4(), {}, priority=priority)
        requests.append(request)
        sent.append((priority, position, request.command_id))
    for chunk in (requests[:20], requests[20:40], requests[40:]):
        await bus.send_batch(chunk)

    order = await _run_in_order(pool, schema, len(requests))

    assert order == [command_id for _, _, command_id in sorted(sent)]


async def test_a_command_due_later_waits_even_with_a_smaller_priority(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    urgent_later, normal_now = uuid.uuid4(), uuid.uuid4()
    await bus.send(DOMAIN, "Job", urgent_later, {}, priority=0, delay=0.5)
    await bus.send(DOMAIN, "Job", normal_now, {}, priority=9)

    assert await _run_in_order(pool, schema, 2) == [normal_now, urgent_later]


async def test_send_batch_and_create_batch_take_a_priority_per_command(
    bus: CommandBus, tables: Tables
) -> None:
    ids = [uuid.uuid4() for _ in range(4)]
    await bus.send_batch(
        [SendRequest(DOMAIN, "Job", ids[0], {}, priority=7), SendRequest(DOMAIN, "Job", ids[1], {})]
    )
    await bus.create_batch(
        DOMAIN, [BatchCommand("Job", ids[2], {}, priority=3), BatchCommand("Job", ids[3], {})]
    )

    priorities = {
        row[0]: row[1] for row in await tables.rows("commands", columns="command_id, priority")
    }
    assert [priorities[i] for i in ids] == [7, 0, 3, 0]


@pytest.mark.parametrize("priority", [-1, 10, 2.0, True, "1"])
async def test_a_bad_priority_is_refused_and_writes_nothing(
    bus: CommandBus, tables: Tables, priority: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        await bus.send(DOMAIN, "Job", uuid.uuid4(), {}, priority=priority)

    assert caught.value.field == "priority"
    assert "0 (runs first) to 9 (runs last)" in str(caught.value)
    assert await tables.counts() == {"commands": 0, "audit": 0}
