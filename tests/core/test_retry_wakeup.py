"""A retry due before the worker's next poll runs when it is due: nothing notifies for
it, so the worker wakes itself."""

from __future__ import annotations

import time
import uuid

from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    RetryPolicy,
)
from core.helpers import DOMAIN, make_worker, running, wait_for_status


async def test_a_retry_due_before_the_next_poll_runs_when_due(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Flaky")
    async def flaky(command: Command, ctx: HandlerContext) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("blip")

    command_id = uuid.uuid4()
    worker = make_worker(
        pool, schema, registry, poll_interval=60, retry_policy=RetryPolicy(backoff=(0.2,))
    )
    async with running(worker):
        await bus.send(DOMAIN, "Flaky", command_id, {})
        began = time.monotonic()
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        assert time.monotonic() - began < 10  # not the 60 s poll
    assert meta.attempts == 2
