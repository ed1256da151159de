"""Leases: a handler holds its command for ``visibility_timeout`` seconds.

Semantics: a handler that overruns its lease without extending it is redelivered (to any
worker, this one included); the late first attempt can no longer record an outcome, so
the command completes exactly once. ``extend_visibility`` keeps the lease for long work.
A handler that always overruns is a poison message: it reaches the troubleshooting queue
once it has been leased more than ``max_attempts`` times.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandMetadata,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    InvalidOperationError,
    TroubleshootingQueue,
)
from core.helpers import (
    DOMAIN,
    event_types,
    execute,
    make_worker,
    running,
    wait_for_event,
    wait_for_status,
    wait_until,
)

LEASE = 0.4


async def test_a_handler_that_overruns_its_lease_is_redelivered_and_completes_once(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    second_done = asyncio.Event()
    calls: list[int] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Slow")
    async def overruns_once(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            await wait_for_event(second_done, what="the redelivered attempt")
        else:
            second_done.set()
        return {"finished_by_attempt": ctx.attempt}

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Slow", command_id, {}, max_attempts=3)
    worker = make_worker(pool, schema, registry, visibility_timeout=LEASE)
    async with running(worker):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        await wait_until(
            lambda: _value(worker.stats["lease_lost"] == 1), what="the late attempt to end"
        )

    assert calls == [1, 2]
    assert meta.attempts == 2
    assert meta.result == {"finished_by_attempt": 2}
    assert await event_types(bus, command_id) == [
        "SENT",
        "RECEIVED",
        "RECEIVED",
        "COMPLETED",
    ]
    assert worker.stats["completed"] == 1


@pytest.mark.anyio  # needed with parametrize: the conftest adds it too late for that
@pytest.mark.parametrize("style", ["async", "plain-def"])
async def test_extend_visibility_keeps_the_lease_for_long_work(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, style: str
) -> None:
    work = LEASE * 2.5  # well past the lease the worker took
    registry = HandlerRegistry()
    calls = 0

    if style == "async":

        async def long_work(command: Command, ctx: HandlerContext) -> dict[str, Any]:
            nonlocal calls
            calls += 1
            deadline = time.monotonic() + work
            while time.monotonic() < deadline:
                await ctx.extend_visibility(LEASE * 2)
                await asyncio.sleep(LEASE / 4)  # simulated work, not synchronisation
            return {"attempt": ctx.attempt}

        registry.register(DOMAIN, "Long", long_work)
    else:

        def long_blocking_work(command: Command, ctx: HandlerContext) -> dict[str, Any]:
            nonlocal calls
            calls += 1
            deadline = time.monotonic() + work
            while time.monotonic() < deadline:
                ctx.extend_visibility_sync(LEASE * 2)
                time.sleep(LEASE / 4)  # simulated work, not synchronisation
            return {"attempt": ctx.attempt}

        registry.register(DOMAIN, "Long", long_blocking_work)

    idle_registry = HandlerRegistry()
    stolen: list[uuid.UUID] = []

    async def thief(command: Command, ctx: HandlerContext) -> None:
        stolen.append(command.command_id)

    idle_registry.register(DOMAIN, "Long", thief)

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Long", command_id, {})
    first = make_worker(pool, schema, registry, visibility_timeout=LEASE, concurrency=2)
    second = make_worker(pool, schema, idle_registry, visibility_timeout=LEASE, concurrency=2)
    async with running(first):
        # The second worker starts once the first holds the lease: it must never take it.
        await wait_until(lambda: _value(calls == 1), what="the first worker to lease it")
        async with running(second):
            meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    assert calls == 1 and stolen == []
    assert meta.attempts == 1 and meta.result == {"attempt": 1}
    assert second.stats["received"] == 0
    assert first.stats["lease_lost"] == 0


async def test_extending_a_lost_lease_raises(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    redelivered = asyncio.Event()
    errors: list[InvalidOperationError] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Slow")
    async def late(command: Command, ctx: HandlerContext) -> None:
        if ctx.attempt > 1:
            redelivered.set()
            return
        await wait_for_event(redelivered, what="redelivery")
        try:
            await ctx.extend_visibility(30)
        except InvalidOperationError as exc:
            errors.append(exc)

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Slow", command_id, {})
    async with running(make_worker(pool, schema, registry, visibility_timeout=LEASE)):
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        await wait_until(lambda: _value(errors), what="the late extend to fail")
    (error,) = errors
    assert str(command_id) in str(error) and "lost" in str(error)


async def test_a_handler_that_always_overruns_its_lease_ends_in_troubleshooting(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    calls: list[int] = []
    never = asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Poison")
    async def hangs(command: Command, ctx: HandlerContext) -> None:
        calls.append(ctx.attempt)
        await never.wait()

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Poison", command_id, {}, max_attempts=2)
    worker = make_worker(pool, schema, registry, visibility_timeout=LEASE)
    async with running(worker, stop_timeout=0.1):
        meta = await wait_for_status(
            bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE
        )

    assert calls == [1, 2]  # the handler never runs a third time
    (item,) = await TroubleshootingQueue(pool, schema=schema).list_troubleshooting(DOMAIN)
    assert item.command_id == command_id and item.max_attempts == 2
    assert meta.last_error_type == "AttemptsExhausted"
    assert meta.last_error_code == "ATTEMPTS_EXHAUSTED"
    assert meta.last_error_message is not None and "max_attempts=2" in meta.last_error_message
    assert await event_types(bus, command_id) == [
        "SENT",
        "RECEIVED",
        "RECEIVED",
        "RECEIVED",
        "MOVED_TO_TROUBLESHOOTING_QUEUE",
    ]


async def test_extend_visibility_works_in_the_smallest_pool_the_worker_accepts(
    database_url: str, pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    concurrency = 2
    all_running = asyncio.Event()
    active = 0
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Long")
    async def long_work(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        nonlocal active
        active += 1
        if active == concurrency:
            all_running.set()
        await wait_for_event(all_running, what="every handler slot to be busy")
        await ctx.extend_visibility(30)
        return {"attempt": ctx.attempt}

    ids = [uuid.uuid4() for _ in range(concurrency)]
    for command_id in ids:
        await bus.send(DOMAIN, "Long", command_id, {}, max_attempts=1)
    sizing = make_worker(pool, schema, registry, concurrency=concurrency)
    async with (
        AsyncConnectionPool(
            database_url, min_size=1, max_size=sizing.required_connections(), timeout=1
        ) as tight,
        running(make_worker(tight, schema, registry, concurrency=concurrency)),
    ):
        for command_id in ids:
            meta = await wait_for_final(bus, command_id)
            assert (meta.status, meta.last_error_message) == (CommandStatus.COMPLETED, None)
            assert meta.result == {"attempt": 1}


async def wait_for_final(bus: CommandBus, command_id: uuid.UUID) -> CommandMetadata:
    final = {CommandStatus.COMPLETED, CommandStatus.FAILED, CommandStatus.IN_TROUBLESHOOTING_QUEUE}

    async def probe() -> CommandMetadata | None:
        meta = await bus.get_command(DOMAIN, command_id)
        return meta if meta is not None and meta.status in final else None

    return await wait_until(probe, what=f"command {command_id} to end")


async def _value(value: Any) -> Any:
    return value


async def test_an_outcome_is_refused_when_the_lease_id_belongs_to_another_worker(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    # Leases do not wait for their WAL flush: after a server crash the same lease id may
    # be handed out again, to another worker. Outcomes check the worker too.
    started, release = asyncio.Event(), asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Slow")
    async def slow(command: Command, ctx: HandlerContext) -> None:
        started.set()
        await release.wait()

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Slow", command_id, {})
    worker = make_worker(pool, schema, registry)
    async with running(worker):
        await asyncio.wait_for(started.wait(), 10)
        await execute(
            pool,
            schema,
            "UPDATE {schema}.commands SET worker = 'another-host:1:1' WHERE command_id = %s",
            [command_id],
        )
        release.set()
        await wait_until(lambda: _value(worker.stats["lease_lost"] == 1), what="lease lost")

    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and meta.status == CommandStatus.IN_PROGRESS
