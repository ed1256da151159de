"""Every bound is checked at the boundary: each public entry point refuses numbers out of
its range (NaN, infinities, huge values, ``timedelta.max``, ``2**31``) and text that is
not storable (lone surrogates, NUL, blank, too long) with a ``ValidationError`` naming
the argument, and nothing is written. The ranges are those of docs/operations.md,
"Limits of every setting".
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BatchCommand,
    CommandBus,
    HandlerRegistry,
    ProcessReplyRouter,
    ProcessRepository,
    Reply,
    ReplyOutcome,
    ReplyQueue,
    Retention,
    RetryPolicy,
    Schedule,
    Scheduler,
    TroubleshootingFilter,
    TroubleshootingQueue,
    ValidationError,
    Worker,
    check_health,
    pause_domain,
    resume_domain,
)
from commandbus import _validation as limits
from commandbus.console import overview
from core._sagas import OrderSaga
from core._tables import rows_written

pytestmark = pytest.mark.anyio

NAN, INF = float("nan"), float("inf")
#: Numbers no setting takes, whatever its range.
NEVER = [NAN, INF, -INF, 1e308, 10**400, 10**5000, True, "5"]
#: What text no audit trail takes.
BAD_TEXT = ["a\ud800b", "a\udcffb", "nul\x00", "", "   ", "x" * 4097, 42]


def label(value: object) -> str:
    """A short repr, also of an integer too long for repr itself."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    return f"{value!r:.40}"


def ints(low: int, high: int) -> list[object]:
    """Integers just outside ``low..high``, and what is not an integer."""
    huge = [n for n in (2**31, 2**63) if n > high]
    return [low - 1, high + 1, *huge, 10**400, -(10**5000), True, 1.5, NAN, INF, "3"]


def seconds(high: float, *, zero: bool = False) -> list[object]:
    """Durations outside ``(0 or more)..high`` seconds."""
    below = [-1, timedelta(seconds=-1)] + ([] if zero else [0, timedelta(0)])
    return [*below, high * 1.001, timedelta(seconds=high + 1), timedelta.max, *NEVER]


DAY = 86_400.0
YEARS = limits.MAX_SECONDS

Call = Callable[["Env", Any], Awaitable[object] | object]


class Env:
    """What the entry points need: a pool and schema, and objects built with good input."""

    def __init__(self, pool: AsyncConnectionPool, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        self.bus = CommandBus(pool, schema=schema)
        self.registry = HandlerRegistry()
        self.registry.register("d", "T", lambda command, ctx: None)
        self.tsq = TroubleshootingQueue(pool, schema=schema)
        self.replies = ReplyQueue(pool, "q", schema=schema)
        self.processes = ProcessRepository(pool, schema=schema)

    def worker(self, **settings: Any) -> Worker:
        return Worker(self.pool, domain="d", registry=self.registry, schema=self.schema, **settings)


ID = uuid.UUID(int=1)
REPLY = Reply(msg_id=1, queue="q", domain="d", command_id=ID, command_type="T",
              correlation_id=None, outcome=ReplyOutcome.SUCCESS)  # fmt: skip
EVERY = TroubleshootingFilter(domain="d")

#: (entry point, argument, bad values, how to call it with one of them).
CASES: list[tuple[str, str, list[object], Call]] = [
    # -- the bus --------------------------------------------------------------------
    ("CommandBus", "default_max_attempts", ints(1, limits.MAX_INT),
     lambda e, v: CommandBus(e.pool, schema=e.schema, default_max_attempts=v)),
    ("CommandBus", "max_data_bytes", ints(1, 268_435_455),
     lambda e, v: CommandBus(e.pool, schema=e.schema, max_data_bytes=v)),
    ("send", "delay", seconds(YEARS, zero=True),
     lambda e, v: e.bus.send("d", "T", uuid.uuid4(), {}, delay=v)),
    ("send", "priority", ints(0, 9), lambda e, v: e.bus.send("d", "T", ID, {}, priority=v)),
    ("send", "max_attempts", ints(1, limits.MAX_INT),
     lambda e, v: e.bus.send("d", "T", ID, {}, max_attempts=v)),
    ("cancel", "reason", BAD_TEXT, lambda e, v: e.bus.cancel("d", ID, reason=v)),
    ("cancel", "operator", BAD_TEXT,
     lambda e, v: e.bus.cancel("d", ID, reason="why", operator=v)),
    ("create_batch", "name", ["a\ud800b", "a\udcffb", "nul\x00", "  ", "x" * 257, 42],
     lambda e, v: e.bus.create_batch("d", [BatchCommand("T", ID, {})], name=v)),
    ("query_commands", "limit", ints(1, 10_000), lambda e, v: e.bus.query_commands(limit=v)),
    ("query_commands", "offset", ints(0, 2**63 - 1), lambda e, v: e.bus.query_commands(offset=v)),
    # -- the worker and its registry ------------------------------------------------
    ("Worker", "concurrency", ints(1, 10_000), lambda e, v: e.worker(concurrency=v)),
    ("Worker", "thread_pool_size", ints(1, 10_000), lambda e, v: e.worker(thread_pool_size=v)),
    ("Worker", "visibility_timeout", seconds(DAY), lambda e, v: e.worker(visibility_timeout=v)),
    ("Worker", "poll_interval", seconds(3600), lambda e, v: e.worker(poll_interval=v)),
    ("Worker", "handler_timeout", seconds(7 * DAY), lambda e, v: e.worker(handler_timeout=v)),
    ("Worker.drain", "timeout", seconds(YEARS), lambda e, v: e.worker().drain(timeout=v)),
    ("Worker.stop", "timeout", seconds(DAY, zero=True), lambda e, v: e.worker().stop(v)),
    ("registry.register", "timeout", seconds(7 * DAY),
     lambda e, v: HandlerRegistry().register("d", "T", print, timeout=v)),
    ("registry.register", "max_running", ints(1, limits.MAX_INT),
     lambda e, v: HandlerRegistry().register("d", "T", print, max_running=v)),
    ("RetryPolicy", "max_attempts", ints(1, limits.MAX_INT),
     lambda e, v: RetryPolicy(max_attempts=v)),
    ("RetryPolicy", "backoff", seconds(YEARS, zero=True), lambda e, v: RetryPolicy(backoff=(1, v))),
    ("RetryPolicy", "jitter", [-0.1, 1.1, *NEVER], lambda e, v: RetryPolicy(jitter=v)),
    # -- schedules and retention ----------------------------------------------------
    ("Schedule", "every", [0.5, 3e11, 10**20, 1e300, *seconds(YEARS)],
     lambda e, v: Schedule("s", domain="d", command_type="T", every=v)),
    ("Schedule", "priority", ints(0, 9),
     lambda e, v: Schedule("s", domain="d", command_type="T", every=60, priority=v)),
    ("Schedule", "max_attempts", ints(1, limits.MAX_INT),
     lambda e, v: Schedule("s", domain="d", command_type="T", every=60, max_attempts=v)),
    ("Scheduler", "max_wait", seconds(DAY),
     lambda e, v: Scheduler(e.pool, [], schema=e.schema, max_wait=v)),
    ("Retention", "older_than", seconds(YEARS), lambda e, v: Retention(older_than=v)),
    ("Retention", "interval", seconds(DAY), lambda e, v: Retention(interval=v)),
    ("Retention", "chunk_size", ints(1, 100_000), lambda e, v: Retention(chunk_size=v)),
    # -- pausing --------------------------------------------------------------------
    ("pause_domain", "reason", BAD_TEXT,
     lambda e, v: pause_domain(e.pool, "d", reason=v, schema=e.schema)),
    ("pause_domain", "operator", BAD_TEXT,
     lambda e, v: pause_domain(e.pool, "d", operator=v, reason="why", schema=e.schema)),
    ("resume_domain", "operator", BAD_TEXT,
     lambda e, v: resume_domain(e.pool, "d", operator=v, schema=e.schema)),
    # -- troubleshooting ------------------------------------------------------------
    ("operator_retry", "operator", BAD_TEXT,
     lambda e, v: e.tsq.operator_retry("d", ID, operator=v)),
    ("operator_retry", "reason", BAD_TEXT, lambda e, v: e.tsq.operator_retry("d", ID, reason=v)),
    ("operator_cancel", "reason", BAD_TEXT, lambda e, v: e.tsq.operator_cancel("d", ID, reason=v)),
    ("operator_complete", "reason", BAD_TEXT,
     lambda e, v: e.tsq.operator_complete("d", ID, reason=v)),
    ("retry_many", "operator", BAD_TEXT, lambda e, v: e.tsq.retry_many(EVERY, operator=v)),
    ("cancel_many", "reason", BAD_TEXT,
     lambda e, v: e.tsq.cancel_many(EVERY, operator="o", reason=v)),
    ("retry_many", "limit", ints(1, 2**63 - 1),
     lambda e, v: e.tsq.retry_many(EVERY, operator="o", limit=v)),
    ("list_troubleshooting", "limit", ints(1, 10_000),
     lambda e, v: e.tsq.list_troubleshooting("d", limit=v)),
    ("TroubleshootingFilter", "error_code", BAD_TEXT,
     lambda e, v: e.tsq.find(TroubleshootingFilter(error_code=v))),
    # -- replies and processes ------------------------------------------------------
    ("ReplyQueue", "visibility_timeout", seconds(DAY),
     lambda e, v: ReplyQueue(e.pool, "q", schema=e.schema, visibility_timeout=v)),
    ("ReplyQueue.read", "visibility_timeout", seconds(DAY),
     lambda e, v: e.replies.read(visibility_timeout=v)),
    ("ReplyQueue.read", "limit", ints(1, 10_000), lambda e, v: e.replies.read(v)),
    ("ReplyQueue.release", "delay", seconds(YEARS, zero=True),
     lambda e, v: e.replies.release(REPLY, delay=v)),
    ("ProcessReplyRouter", "concurrency", ints(1, 10_000),
     lambda e, v: router(e, concurrency=v)),
    ("ProcessReplyRouter", "visibility_timeout", seconds(DAY),
     lambda e, v: router(e, visibility_timeout=v)),
    ("ProcessReplyRouter", "poll_interval", seconds(3600),
     lambda e, v: router(e, poll_interval=v)),
    ("retry_parked_reply", "parked_id", ints(1, 2**63 - 1),
     lambda e, v: e.processes.retry_parked_reply(v, operator="o")),
    ("retry_parked_reply", "operator", BAD_TEXT,
     lambda e, v: e.processes.retry_parked_reply(1, operator=v)),
    ("discard_parked_reply", "reason", BAD_TEXT,
     lambda e, v: e.processes.discard_parked_reply(1, operator="o", reason=v)),
    # -- health and the console's reads ---------------------------------------------
    ("check_health", "max_pending_age", seconds(YEARS, zero=True),
     lambda e, v: check_health(e.pool, schema=e.schema, max_pending_age=v)),
    ("check_health", "max_troubleshooting", ints(0, 2**63 - 1),
     lambda e, v: check_health(e.pool, schema=e.schema, max_troubleshooting=v)),
    ("check_health", "timeout", seconds(DAY),
     lambda e, v: check_health(e.pool, schema=e.schema, timeout=v)),
    ("overview", "cap", ints(1, limits.MAX_INT),
     lambda e, v: overview(e.pool, schema=e.schema, cap=v)),
]  # fmt: skip


def router(env: Env, **settings: Any) -> ProcessReplyRouter:
    saga = OrderSaga(env.bus)
    return ProcessReplyRouter(
        env.pool, reply_queue=saga.reply_queue, managers=[saga], schema=env.schema, **settings
    )


async def test_every_entry_point_refuses_every_bad_number_and_text_and_writes_nothing(
    pool: AsyncConnectionPool, schema: str, database_url: str
) -> None:
    env = Env(pool, schema)
    failures = []
    for entry, field, bad_values, call in CASES:
        for value in bad_values:
            shown = f"{entry}({field}={label(value)})"
            try:
                result = call(env, value)
                if isinstance(result, Awaitable):
                    await result
            except ValidationError as exc:
                if exc.field != field:
                    failures.append(f"{shown}: ValidationError names {exc.field!r}")
            except Exception as exc:  # what the user got instead
                failures.append(f"{shown}: {type(exc).__name__}: {exc}"[:200])
            else:
                failures.append(f"{shown}: accepted")
    assert failures == []
    assert rows_written(database_url, schema) == {}


async def test_the_edges_of_each_range_are_accepted(pool: AsyncConnectionPool, schema: str) -> None:
    env = Env(pool, schema)
    env.worker(
        concurrency=10_000,
        thread_pool_size=1,
        visibility_timeout=DAY,
        poll_interval=3600,
        handler_timeout=timedelta(days=7),
    )
    HandlerRegistry().register("d", "T", print, timeout=0.001, max_running=2**31 - 1)
    assert Schedule("s", domain="d", command_type="T", every=YEARS).every == timedelta(days=36_500)
    assert Schedule("s", domain="d", command_type="T", every=1).every == timedelta(seconds=1)
    assert Retention(older_than=timedelta(days=36_500), chunk_size=100_000).interval == 60
    await pause_domain(pool, "d", reason="x" * 4096, operator="ünïcode ✓", schema=schema)
    assert await resume_domain(pool, "d", operator="alice", schema=schema)
    sent = await env.bus.send("d", "T", ID, {}, delay=timedelta(days=36_500), priority=9)
    assert sent.command_id == ID


async def test_a_schedule_at_its_longest_interval_runs_due_without_overflow(
    pool: AsyncConnectionPool, schema: str
) -> None:
    longest = Schedule("s", domain="d", command_type="T", every=timedelta(days=36_500))
    scheduler = Scheduler(pool, [longest], schema=schema, now=lambda: datetime.now(UTC))
    assert await scheduler.run_due() == []  # registered; the next tick is decades away


async def test_a_retention_at_its_longest_age_prunes_without_overflow(
    pool: AsyncConnectionPool, schema: str
) -> None:
    from commandbus import Pruner

    result = await Pruner(pool, Retention(older_than=timedelta(days=36_500)), schema=schema).prune()
    assert result is not None and result.commands == 0


def test_the_documented_table_states_the_ranges_the_code_checks() -> None:
    docs = Path(__file__).parents[2] / "docs" / "operations.md"
    section = docs.read_text().split("## Limits of every setting", 1)[1]
    for figure in (
        f"{limits.MAX_CONCURRENCY:,}",
        f"{limits.MAX_LEASE_S:,.0f} s",
        f"{limits.MAX_POLL_INTERVAL_S:,.0f} s",
        f"{limits.MAX_HANDLER_TIMEOUT_S:,.0f} s",
        f"{limits.MAX_INTERVAL_S:,.0f} s",
        f"{limits.MAX_INT:,}",
        f"{limits.MAX_DELAY.days:,} days",
        f"{limits.MAX_CHUNK_SIZE:,}",
        f"{limits.MAX_TEXT:,} characters",
        f"{limits.MAX_NAME_LENGTH}",
    ):
        assert figure in section, figure


async def test_a_handler_cannot_extend_its_lease_beyond_the_longest_lease(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    from commandbus import CommandStatus
    from core.helpers import make_worker, running, wait_for_status

    refused: dict[object, str] = {}
    registry = HandlerRegistry()

    @registry.handler("d", "Long")
    async def long(command: Any, ctx: Any) -> None:
        for seconds in (1e308, INF, NAN, DAY + 1, timedelta.max, 0):
            try:
                await ctx.extend_visibility(seconds)
            except ValidationError as exc:
                refused[str(seconds)] = exc.field
        await ctx.extend_visibility(DAY)  # the longest lease is fine

    async with running(make_worker(pool, schema, registry, domain="d")):
        await bus.send("d", "Long", ID, {})
        await wait_for_status(bus, "d", ID, CommandStatus.COMPLETED)

    assert len(refused) == 6 and set(refused.values()) == {"seconds"}
