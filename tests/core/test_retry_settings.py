"""Retry settings where users look: a worker's RetryPolicy.max_attempts cannot change the
budget of commands sent with their own, and the worker says so, once."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, CommandStatus, HandlerRegistry, RetryPolicy
from core.helpers import DOMAIN, make_worker, running, wait_for_status

pytestmark = pytest.mark.anyio


def _registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Work")
    async def work(command: Any, ctx: Any) -> None:
        return None

    return registry


async def _run(
    pool: AsyncConnectionPool,
    schema: str,
    bus: CommandBus,
    caplog: pytest.LogCaptureFixture,
    **options: Any,
) -> list[str]:
    caplog.set_level(logging.WARNING, logger="commandbus.worker")
    ids = [uuid.uuid4() for _ in range(3)]
    for command_id in ids:
        await bus.send(DOMAIN, "Work", command_id, {})  # the bus's default budget: 3
    async with running(make_worker(pool, schema, _registry(), **options)):
        for command_id in ids:
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    return [r.getMessage() for r in caplog.records if "does not apply" in r.getMessage()]


async def test_a_policy_budget_that_cannot_apply_is_warned_once(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, caplog: pytest.LogCaptureFixture
) -> None:
    warnings = await _run(
        pool, schema, bus, caplog, retry_policy=RetryPolicy(max_attempts=5, backoff=(0,))
    )
    assert len(warnings) == 1
    assert "RetryPolicy(max_attempts=5)" in warnings[0]
    assert "sent with max_attempts=3" in warnings[0]


async def test_no_warning_when_the_budgets_agree_or_no_policy_is_given(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, caplog: pytest.LogCaptureFixture
) -> None:
    assert await _run(pool, schema, bus, caplog, retry_policy=RetryPolicy(backoff=(0,))) == []
    assert await _run(pool, schema, bus, caplog, retry_policy=None) == []
