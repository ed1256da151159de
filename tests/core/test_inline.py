"""Inline mode (issue #17 item 2): handlers run in the test's process, on its database,
right after the send commits (or on ``drain()`` for a send in the caller's transaction),
through the worker's own code."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    CommandBus,
    CommandStatus,
    HandlerRegistry,
    PermanentCommandError,
    RetryPolicy,
    TransientCommandError,
)
from commandbus.models import Command
from commandbus.testing import InlineRunner, inline
from core._tables import Tables

DOMAIN = "orders"


@pytest.fixture
async def shipped(tables: Tables) -> Tables:
    await tables.execute(
        "CREATE TABLE {schema}.shipped (order_id int, created_at timestamptz DEFAULT now())"
    )
    return tables


def registry_for(bus: CommandBus) -> HandlerRegistry:
    registry = HandlerRegistry()
    schema = bus.schema

    @registry.handler(DOMAIN, "Ship")
    async def ship(command: Command, ctx: Any) -> dict[str, Any]:
        await ctx.conn.execute(
            f"INSERT INTO {schema}.shipped VALUES (%s)",
            [command.data["order"]],
        )
        return {"shipped": command.data["order"]}

    @registry.handler(DOMAIN, "Order")
    async def order(command: Command, ctx: Any) -> None:
        await bus.send(DOMAIN, "Ship", uuid.uuid4(), command.data, conn=ctx.conn)
        await bus.send("billing", "Invoice", uuid.uuid4(), command.data)

    @registry.handler("billing", "Invoice")
    def invoice(command: Command, ctx: Any) -> dict[str, Any]:  # plain def: in a thread
        return {"invoiced": command.data["order"]}

    @registry.handler(DOMAIN, "Broken")
    async def broken(command: Command, ctx: Any) -> None:
        raise PermanentCommandError("NO_STOCK", "nothing left")

    @registry.handler(DOMAIN, "Flaky")
    async def flaky(command: Command, ctx: Any) -> dict[str, int]:
        if ctx.attempt < 3:
            raise TransientCommandError("FLAKY", "try again")
        return {"attempt": ctx.attempt}

    @registry.handler(DOMAIN, "Hang")
    async def hang(command: Command, ctx: Any) -> None:
        await asyncio.Event().wait()

    return registry


async def orders_shipped(tables: Tables) -> list[int]:
    return [row[0] for row in await tables.rows("shipped", columns="order_id")]


async def test_send_returns_after_the_handler_ran_and_committed(
    bus: CommandBus, shipped: Tables
) -> None:
    command_id = uuid.uuid4()
    async with inline(bus, registry_for(bus)) as runner:
        await bus.send(DOMAIN, "Ship", command_id, {"order": 7})
        assert await orders_shipped(shipped) == [7]
        command = await bus.get_command(DOMAIN, command_id)
        assert command is not None
        assert (command.status, command.result) == (CommandStatus.COMPLETED, {"shipped": 7})
    assert [(o.command_id, o.status) for o in runner.outcomes] == [
        (command_id, CommandStatus.COMPLETED)
    ]
    event_types = [e.event_type for e in await bus.get_audit_trail(command_id)]
    assert event_types == ["SENT", "RECEIVED", "COMPLETED"]  # as a worker records it


async def test_what_the_handlers_send_runs_too_across_domains(
    bus: CommandBus, shipped: Tables
) -> None:
    async with inline(bus, registry_for(bus)) as runner:
        await bus.send(DOMAIN, "Order", uuid.uuid4(), {"order": 8})
        assert await orders_shipped(shipped) == [8]
    kinds = sorted((o.command_type, o.status.value) for o in runner.outcomes)
    assert kinds == [
        ("Invoice", "COMPLETED"),
        ("Order", "COMPLETED"),
        ("Ship", "COMPLETED"),
    ]


async def test_a_send_in_the_callers_transaction_runs_on_drain_after_commit(
    pool: AsyncConnectionPool, bus: CommandBus, shipped: Tables
) -> None:
    async with inline(bus, registry_for(bus)) as runner:
        async with pool.connection() as conn:
            await bus.send(DOMAIN, "Ship", uuid.uuid4(), {"order": 9}, conn=conn)
            assert await runner.drain() == []  # not committed: nothing to run yet
            assert await orders_shipped(shipped) == []
        (done,) = await runner.drain()
        assert done.status == CommandStatus.COMPLETED
        assert await orders_shipped(shipped) == [9]
    # Rolled back: never runs.
    async with inline(bus, registry_for(bus)) as runner:
        async with pool.connection() as conn:
            await bus.send(DOMAIN, "Ship", uuid.uuid4(), {"order": 10}, conn=conn)
            await conn.rollback()
        assert await runner.drain() == []
    assert await orders_shipped(shipped) == [9]


async def test_failures_follow_the_workers_rules(bus: CommandBus, tables: Tables) -> None:
    broken, flaky, later = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with inline(bus, registry_for(bus), retry_policy=RetryPolicy(backoff=(0,))):
        await bus.send(DOMAIN, "Broken", broken, {})  # no exception at the send
        await bus.send(DOMAIN, "Flaky", flaky, {}, max_attempts=3)
    parked = await bus.get_command(DOMAIN, broken)
    assert parked is not None
    assert (parked.status, parked.last_error_code) == (
        CommandStatus.IN_TROUBLESHOOTING_QUEUE,
        "NO_STOCK",
    )
    retried = await bus.get_command(DOMAIN, flaky)
    assert retried is not None and (retried.status, retried.attempts) == ("COMPLETED", 3)

    async with inline(bus, registry_for(bus)):  # the default backoff: not waited for
        await bus.send(DOMAIN, "Flaky", later, {})
    waiting = await bus.get_command(DOMAIN, later)
    assert waiting is not None and (waiting.status, waiting.attempts) == ("PENDING", 1)


async def test_nothing_runs_outside_the_block_or_for_other_domains(
    bus: CommandBus, shipped: Tables
) -> None:
    runner = InlineRunner(bus, registry_for(bus))
    hooks = bus.hooks
    async with runner:
        assert bus.hooks is not hooks
        unhandled = uuid.uuid4()
        await bus.send("elsewhere", "Ship", unhandled, {"order": 1})
        delayed = uuid.uuid4()
        await bus.send(DOMAIN, "Ship", delayed, {"order": 2}, delay=3600)
    assert bus.hooks is hooks
    after = uuid.uuid4()
    await bus.send(DOMAIN, "Ship", after, {"order": 3})
    for domain, command_id in (("elsewhere", unhandled), (DOMAIN, delayed), (DOMAIN, after)):
        command = await bus.get_command(domain, command_id)
        assert command is not None and command.status == CommandStatus.PENDING
    assert await orders_shipped(shipped) == []
    assert runner.outcomes == []


async def test_a_failure_of_the_runner_itself_is_raised_when_the_block_ends(
    bus: CommandBus,
) -> None:
    with pytest.raises(TimeoutError, match="still running"):
        async with inline(bus, registry_for(bus), timeout=0.2):
            await bus.send(DOMAIN, "Hang", uuid.uuid4(), {})  # returns: hooks swallow


async def test_a_send_from_another_task_during_a_drain_is_run_by_that_drain(
    bus: CommandBus, shipped: Tables
) -> None:
    registry = registry_for(bus)
    started, release = asyncio.Event(), asyncio.Event()

    @registry.handler(DOMAIN, "Slow")
    async def slow(command: Command, ctx: Any) -> None:
        started.set()
        await release.wait()

    async with inline(bus, registry) as runner:
        first = asyncio.create_task(bus.send(DOMAIN, "Slow", uuid.uuid4(), {}))
        await started.wait()  # a drain is running the slow handler
        await bus.send(DOMAIN, "Ship", uuid.uuid4(), {"order": 11})  # returns at once
        assert await orders_shipped(shipped) == []
        release.set()
        await first  # the drain ends only once it has run the second command too
        assert await orders_shipped(shipped) == [11]
    assert sorted(o.command_type for o in runner.outcomes) == ["Ship", "Slow"]
