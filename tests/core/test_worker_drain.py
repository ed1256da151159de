"""``Worker.drain()``: run everything due now with the worker's own parts, then return."""

from __future__ import annotations

import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    InvalidOperationError,
    RetryPolicy,
    SendRequest,
    ValidationError,
)
from core.helpers import DOMAIN, make_worker, running


async def test_drain_runs_what_is_due_including_what_handlers_send_and_immediate_retries(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()
    follow_ups: list[uuid.UUID] = []
    failed_once: set[uuid.UUID] = set()

    @registry.handler(DOMAIN, "First")
    async def first(command: Command, ctx: HandlerContext) -> None:
        follow_up = uuid.uuid4()
        follow_ups.append(follow_up)
        await bus.send(DOMAIN, "Second", follow_up, {}, conn=ctx.conn)

    @registry.handler(DOMAIN, "Second")
    def second(command: Command, ctx: HandlerContext) -> None:
        if command.command_id not in failed_once:
            failed_once.add(command.command_id)
            raise RuntimeError("once")

    ids = [uuid.uuid4() for _ in range(3)]
    await bus.send_batch([SendRequest(DOMAIN, "First", i, {}) for i in ids])
    later = uuid.uuid4()
    await bus.send(DOMAIN, "First", later, {}, delay=3600)  # not due: not run
    worker = make_worker(pool, schema, registry, retry_policy=RetryPolicy(backoff=(0,)))

    ran = await worker.drain(timeout=20)

    assert sorted(ran[:3]) == sorted(ids)
    assert sorted(ran[3:]) == sorted(follow_ups) and later not in ran
    for command_id in [*ids, *follow_ups]:
        meta = await bus.get_command(DOMAIN, command_id)
        assert meta is not None and meta.status == CommandStatus.COMPLETED
    assert worker.stats["completed"] == 6 and worker.stats["retried"] == 3
    assert not worker.running


async def test_drain_refuses_a_running_worker_and_bad_timeouts(
    pool: AsyncConnectionPool, schema: str
) -> None:
    worker = make_worker(pool, schema, HandlerRegistry())
    with pytest.raises(ValidationError, match="timeout"):
        await worker.drain(timeout=float("nan"))
    async with running(worker):
        with pytest.raises(InvalidOperationError, match="running"):
            await worker.drain()
