"""Wake-up: LISTEN/NOTIFY starts work on an idle worker at once; polling covers the rest."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    migrate,
)
from core.helpers import DOMAIN, make_worker, running, wait_for_event, wait_for_status


async def test_a_command_sent_to_an_idle_worker_starts_well_under_the_poll_interval(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    started: dict[uuid.UUID, float] = {}
    arrived = asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Ping")
    async def ping(command: Command, ctx: HandlerContext) -> None:
        started[command.command_id] = time.perf_counter()
        arrived.set()

    latencies = []
    async with running(make_worker(pool, schema, registry, poll_interval=5)):
        # The first command also lets the worker finish its start-up dequeue and go idle.
        for _ in range(6):
            command_id = uuid.uuid4()
            arrived.clear()
            sent = time.perf_counter()
            await bus.send(DOMAIN, "Ping", command_id, {})
            await wait_for_event(arrived, timeout=4, what="the handler (polling is 5s)")
            latencies.append(started[command_id] - sent)
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    # Polling alone would take up to 5s. The bounds leave room for a loaded test machine;
    # bench/bench_worker.py measures the real figures (milliseconds).
    idle = latencies[1:]
    assert max(idle) < 1.0, latencies
    assert statistics.median(idle) < 0.25, latencies


async def test_without_notify_polling_still_delivers(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()

    async def noop(command: Command, ctx: HandlerContext) -> None:
        return None

    registry.register(DOMAIN, "Ping", noop)
    command_id = uuid.uuid4()
    worker = make_worker(pool, schema, registry, use_notify=False, poll_interval=0.1)
    async with running(worker):
        await bus.send(DOMAIN, "Ping", command_id, {})
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)


async def test_a_delayed_command_is_delivered_when_due(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    started: list[float] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Later")
    async def later(command: Command, ctx: HandlerContext) -> None:
        started.append(time.perf_counter())

    command_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry, poll_interval=0.05)):
        sent = time.perf_counter()
        await bus.send(DOMAIN, "Later", command_id, {}, delay=0.3)
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert started[0] - sent >= 0.25


@pytest.mark.anyio  # needed with parametrize: the conftest adds it too late for that
@pytest.mark.parametrize(
    "domain",
    ["billing.eu-west_2", "a-very.long.domain-name." * 5],  # the second needs a hashed channel
)
async def test_notify_wakes_the_worker_for_a_mixed_case_schema_and_any_valid_domain(
    database_url: str, domain: str
) -> None:
    schema = f"Mixed_Case_{uuid.uuid4().hex[:8]}"  # quoted identifier: case is kept
    arrived = asyncio.Event()
    registry = HandlerRegistry()

    async def ping(command: Command, ctx: HandlerContext) -> None:
        arrived.set()

    registry.register(domain, "Ping", ping)
    try:
        async with AsyncConnectionPool(database_url, min_size=2, max_size=10, open=False) as pool:
            await migrate(pool, schema=schema)
            bus = CommandBus(pool, schema=schema)
            worker = make_worker(pool, schema, registry, domain=domain, poll_interval=30)
            async with running(worker):
                sent = time.perf_counter()
                await bus.send(domain, "Ping", uuid.uuid4(), {})
                await wait_for_event(arrived, timeout=10, what="the handler (polling is 30s)")
            assert time.perf_counter() - sent < 5  # woken by the notification, not a poll
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def test_a_worker_resumes_at_once_when_every_pooled_connection_was_dropped(
    database_url: str, pool: AsyncConnectionPool, schema: str
) -> None:
    """A server restart kills every idle connection in the pool. The listener sees it
    first; work must resume within moments, not after one failed fetch per dead
    connection."""
    arrived = asyncio.Event()
    registry = HandlerRegistry()

    async def ping(command: Command, ctx: HandlerContext) -> None:
        arrived.set()

    registry.register(DOMAIN, "Ping", ping)
    async with AsyncConnectionPool(database_url, min_size=24, max_size=24, open=False) as big:
        await big.open(wait=True)
        connections = [await big.getconn() for _ in range(24)]
        pids = [conn.info.backend_pid for conn in connections]
        for conn in connections:
            await big.putconn(conn)
        bus = CommandBus(pool, schema=schema)  # the sender is elsewhere, unaffected
        worker = make_worker(big, schema, registry, poll_interval=30)
        async with running(worker):
            with psycopg.connect(database_url, autocommit=True) as admin:
                # Every backend of this pool (and no other test's), as a restart would.
                admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", [pids])
            sent = time.perf_counter()
            await bus.send(DOMAIN, "Ping", uuid.uuid4(), {})
            await wait_for_event(arrived, timeout=30, what="the handler after the drop")
            assert time.perf_counter() - sent < 4
