"""Concurrency: up to ``concurrency`` commands at once, and never one command twice at once."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    SendRequest,
)
from core.helpers import (
    DOMAIN,
    count_status,
    execute,
    make_worker,
    running,
    wait_for_count,
    wait_until,
)


@pytest.fixture
async def second_pool(database_url: str, pool: AsyncConnectionPool) -> AsyncIterator[Any]:
    """Another pool on the same schema, as a second worker process would have."""
    async with AsyncConnectionPool(database_url, min_size=1, max_size=12) as p:
        yield p


async def test_two_workers_never_run_one_command_concurrently_and_complete_each_once(
    pool: AsyncConnectionPool, second_pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    n = 500
    running_now: Counter[uuid.UUID] = Counter()
    most_at_once: Counter[uuid.UUID] = Counter()
    executions: Counter[uuid.UUID] = Counter()

    def registry() -> HandlerRegistry:
        reg = HandlerRegistry()

        async def count(command: Command, ctx: HandlerContext) -> None:
            key = command.command_id
            running_now[key] += 1
            executions[key] += 1
            most_at_once[key] = max(most_at_once[key], running_now[key])
            await asyncio.sleep(random.random() / 1000)  # interleave the two workers
            running_now[key] -= 1

        reg.register(DOMAIN, "Count", count)
        return reg

    ids = [uuid.uuid4() for _ in range(n)]
    await bus.send_batch([SendRequest(DOMAIN, "Count", i, {"i": k}) for k, i in enumerate(ids)])
    first = make_worker(pool, schema, registry(), concurrency=10)
    second = make_worker(second_pool, schema, registry(), concurrency=10)
    async with running(first), running(second):
        await wait_for_count(pool, schema, CommandStatus.COMPLETED, n, timeout=30)

    assert set(executions) == set(ids)
    assert max(most_at_once.values()) == 1
    assert set(executions.values()) == {1}
    assert first.stats["received"] + second.stats["received"] == n
    assert first.stats["received"] > 0 and second.stats["received"] > 0
    assert first.stats["lease_lost"] == second.stats["lease_lost"] == 0
    rows = await execute(
        pool,
        schema,
        "SELECT event_type, count(*) FROM {schema}.audit GROUP BY 1 ORDER BY 1",
    )
    assert rows == []  # successes are derived from the command rows, nothing stored
    assert await count_status(pool, schema, CommandStatus.COMPLETED) == n
    trail = await bus.get_audit_trail(ids[0])
    assert [e.event_type for e in trail] == ["SENT", "RECEIVED", "COMPLETED"]


async def test_no_more_than_concurrency_handlers_run_at_once(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    gate = asyncio.Event()
    active = 0
    most = 0
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Wait")
    async def wait(command: Command, ctx: HandlerContext) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await gate.wait()
        active -= 1

    await bus.send_batch([SendRequest(DOMAIN, "Wait", uuid.uuid4(), {}) for _ in range(10)])
    async with running(make_worker(pool, schema, registry, concurrency=3)):

        async def three_running() -> bool:
            return active == 3

        await wait_until(three_running, what="three handlers to run")
        # Only three messages are leased; the other seven stay deliverable to anyone.
        assert await count_status(pool, schema, CommandStatus.IN_PROGRESS) == 3
        assert await count_status(pool, schema, CommandStatus.PENDING) == 7
        gate.set()
        await wait_for_count(pool, schema, CommandStatus.COMPLETED, 10)
    assert most == 3


async def test_plain_def_handlers_are_bounded_by_the_thread_pool_size(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    gate = threading.Event()
    lock = threading.Lock()
    active = 0
    most = 0
    registry = HandlerRegistry()

    def blocking(command: Command, ctx: HandlerContext) -> None:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        gate.wait(10)
        with lock:
            active -= 1

    registry.register(DOMAIN, "Block", blocking)
    await bus.send_batch([SendRequest(DOMAIN, "Block", uuid.uuid4(), {}) for _ in range(6)])
    worker = make_worker(pool, schema, registry, concurrency=6, thread_pool_size=2)
    try:
        async with running(worker):

            async def all_leased() -> bool:
                return await count_status(pool, schema, CommandStatus.IN_PROGRESS) == 6

            await wait_until(all_leased, what="six leased commands")

            async def two_running() -> bool:
                return active == 2

            await wait_until(two_running, what="two handler threads")
            gate.set()
            await wait_for_count(pool, schema, CommandStatus.COMPLETED, 6)
    finally:
        gate.set()
    assert most == 2


async def test_a_full_lease_batch_is_followed_at_once_by_the_next(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a dequeue fills its batch (more work may wait), the worker leases again at
    once instead of sleeping until the next poll (it once idled a poll_interval per batch
    whenever concurrency exceeded the batch size)."""
    import commandbus._engine.pacer as pacer_module

    monkeypatch.setattr(pacer_module, "FETCH_BATCH", 2)
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Quick")
    async def quick(command: Command, ctx: HandlerContext) -> None:
        return None

    await bus.send_batch([SendRequest(DOMAIN, "Quick", uuid.uuid4(), {}) for _ in range(8)])
    worker = make_worker(pool, schema, registry, concurrency=6, poll_interval=60)
    async with running(worker):
        await wait_for_count(pool, schema, CommandStatus.COMPLETED, 8, timeout=10)
