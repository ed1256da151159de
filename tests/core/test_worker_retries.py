"""Retries: transient failures are retried with backoff, then parked when attempts run out.

The attempt budget is the command's own ``max_attempts`` (fixed at send, else the bus's
default); the worker's ``RetryPolicy`` only says how long to wait between attempts.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    RetryPolicy,
    TransientCommandError,
    TroubleshootingQueue,
    ValidationError,
)
from core.helpers import DOMAIN, event_types, make_worker, queue_messages, running, wait_for_status


async def test_transient_error_is_retried_then_succeeds(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    attempts: list[tuple[int, int]] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Charge")
    async def flaky(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        attempts.append((ctx.attempt, ctx.max_attempts))
        if not ctx.is_last_attempt:
            raise TransientCommandError("GATEWAY_TIMEOUT", "payment gateway timed out")
        return {"charged": True}

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Charge", command_id, {}, max_attempts=3)
    async with running(make_worker(pool, schema, registry)) as worker:
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    assert attempts == [(1, 3), (2, 3), (3, 3)]
    assert meta.attempts == 3 and meta.result == {"charged": True}
    trail = await bus.get_audit_trail(command_id)
    assert [e.event_type for e in trail] == [
        "SENT",
        "RECEIVED",
        "RETRY_SCHEDULED",
        "RECEIVED",
        "RETRY_SCHEDULED",
        "RECEIVED",
        "COMPLETED",
    ]
    retry = trail[2].details
    assert (retry["attempt"], retry["code"], retry["delay"]) == (1, "GATEWAY_TIMEOUT", 0)
    assert worker.stats["retried"] == 2 and worker.stats["completed"] == 1


async def test_unexpected_exceptions_are_retried_like_transient_errors(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Parse")
    async def buggy_once(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise KeyError("missing")
        return {"attempt": ctx.attempt}

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Parse", command_id, {})
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.result == {"attempt": 2}
    assert (meta.last_error_type, meta.last_error_code) == ("KeyError", "KeyError")


async def test_exhausted_retries_park_the_command_with_type_code_message_and_traceback(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    calls = 0
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Charge")
    async def always_down(command: Command, ctx: HandlerContext) -> None:
        nonlocal calls
        calls += 1
        raise TransientCommandError("GATEWAY_DOWN", f"gateway down (attempt {ctx.attempt})")

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Charge", command_id, {"amount": 5}, max_attempts=2)
    async with running(make_worker(pool, schema, registry)) as worker:
        meta = await wait_for_status(
            bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE
        )

    assert calls == 2 and meta.attempts == 2
    (item,) = await TroubleshootingQueue(pool, schema=schema).list_troubleshooting(DOMAIN)
    assert (item.command_id, item.command_type, item.data) == (command_id, "Charge", {"amount": 5})
    assert (item.attempts, item.max_attempts) == (2, 2)
    assert item.last_error_type == "TransientCommandError"
    assert item.last_error_code == "GATEWAY_DOWN"
    assert item.last_error_message == "gateway down (attempt 2)"
    assert item.last_error_traceback is not None
    assert "always_down" in item.last_error_traceback
    assert "gateway down (attempt 2)" in item.last_error_traceback
    assert await event_types(bus, command_id) == [
        "SENT",
        "RECEIVED",
        "RETRY_SCHEDULED",
        "RECEIVED",
        "MOVED_TO_TROUBLESHOOTING_QUEUE",
    ]
    assert await queue_messages(pool, schema, command_id) == 0
    assert worker.stats["troubleshooting"] == 1


async def test_the_commands_own_max_attempts_wins_over_the_policy(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    calls: dict[uuid.UUID, int] = {}
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Fail")
    async def fail(command: Command, ctx: HandlerContext) -> None:
        calls[command.command_id] = calls.get(command.command_id, 0) + 1
        raise TransientCommandError("DOWN", "still down")

    once, by_default = uuid.uuid4(), uuid.uuid4()
    await bus.send(DOMAIN, "Fail", once, {}, max_attempts=1)
    # No max_attempts at send: the bus's default (here 2) is fixed on the command.
    await CommandBus(pool, schema=schema, default_max_attempts=2).send(
        DOMAIN, "Fail", by_default, {}
    )
    policy = RetryPolicy(max_attempts=10, backoff=(0,))
    async with running(make_worker(pool, schema, registry, retry_policy=policy)):
        first = await wait_for_status(bus, DOMAIN, once, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
        second = await wait_for_status(
            bus, DOMAIN, by_default, CommandStatus.IN_TROUBLESHOOTING_QUEUE
        )
    assert calls == {once: 1, by_default: 2}
    assert (first.attempts, first.max_attempts) == (1, 1)
    assert (second.attempts, second.max_attempts) == (2, 2)


async def test_backoff_delays_the_next_attempt(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    started: list[float] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Slow")
    async def flaky(command: Command, ctx: HandlerContext) -> None:
        started.append(time.monotonic())
        if ctx.attempt == 1:
            raise TransientCommandError("BUSY", "try later")

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Slow", command_id, {})
    policy = RetryPolicy(backoff=(0.4, 60))
    async with running(make_worker(pool, schema, registry, retry_policy=policy)):
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    assert len(started) == 2
    assert started[1] - started[0] >= 0.35  # the database clock and ours may differ slightly
    retry = (await bus.get_audit_trail(command_id))[2]
    assert retry.event_type == "RETRY_SCHEDULED" and retry.details["delay"] == 0.4


def test_retry_policy_delays_repeat_the_last_value_and_jitter_stays_in_bounds() -> None:
    policy = RetryPolicy(backoff=(10, 60, 300))
    assert [policy.delay_after(n) for n in (1, 2, 3, 4, 9)] == [10, 60, 300, 300, 300]
    jittered = RetryPolicy(backoff=(100,), jitter=0.1)
    delays = {jittered.delay_after(1) for _ in range(50)}
    assert all(90 <= d <= 110 for d in delays) and len(delays) > 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"backoff": (math.inf,)}, "backoff"),  # would fail every retry's recording
        ({"backoff": (math.nan,)}, "backoff"),
        ({"backoff": (1e300,)}, "backoff"),
        ({"backoff": (-1,)}, "backoff"),
        ({"backoff": ("10",)}, "backoff"),
        ({"backoff": (True,)}, "backoff"),
        ({"backoff": 5}, "backoff"),
        ({"backoff": "10"}, "backoff"),
        ({"backoff": ()}, "backoff"),
        ({"backoff": (None, 5)}, "backoff"),  # not "no delay"
        ({"backoff": (timedelta(days=-1),)}, "backoff"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": None}, "max_attempts"),
        ({"jitter": 2}, "jitter"),
        ({"jitter": True}, "jitter"),
    ],
    ids=repr,
)
def test_retry_policy_refuses_values_it_could_not_apply(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        RetryPolicy(**options)
    assert caught.value.field == field


def test_retry_policy_takes_any_real_number_or_timedelta_as_seconds() -> None:
    policy = RetryPolicy(backoff=(1, timedelta(minutes=1), Decimal("1.5"), Fraction(1, 2)))
    assert policy.backoff == (1.0, 60.0, 1.5, 0.5)
    assert 9 <= RetryPolicy(backoff=(10,), jitter=Decimal("0.1")).delay_after(1) <= 11
