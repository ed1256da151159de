"""Periodic commands: ticks computed from cron (in a time zone) or an interval, each tick
sent once however many schedulers race for it, missed ticks per the documented policy,
all driven by a controllable clock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    CommandBus,
    CommandStatus,
    HandlerRegistry,
    Schedule,
    Scheduler,
    ValidationError,
    list_schedules,
)
from core.helpers import DOMAIN, execute, make_worker, running, wait_until

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 10, 10, 0, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _every_minute(**options: Any) -> Schedule:
    options.setdefault("data", {"report": "hourly"})
    return Schedule(
        "minutely", domain=DOMAIN, command_type="Report", every=timedelta(minutes=1), **options
    )


async def _commands(pool: AsyncConnectionPool, schema: str) -> list[tuple[Any, ...]]:
    rows = await execute(
        pool,
        schema,
        "SELECT command_id, command_type, data FROM {schema}.commands ORDER BY created_at",
    )
    return list(rows)


def test_cron_ticks_are_read_in_their_time_zone() -> None:
    nightly = Schedule(
        "nightly", domain=DOMAIN, command_type="Report", cron="0 3 * * *", tz="Europe/Paris"
    )
    # 03:00 in Paris is 02:00 UTC in winter time, 01:00 UTC in summer time.
    assert nightly.latest_tick(T0) == datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    assert nightly.next_tick(T0) == datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert nightly.next_tick(summer) == datetime(2026, 7, 2, 1, 0, tzinfo=UTC)
    # A tick at exactly `now` is the latest tick; the next one is after it.
    on_tick = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    assert nightly.latest_tick(on_tick) == on_tick
    assert nightly.next_tick(on_tick) == datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
    assert nightly.spec == "cron 0 3 * * * Europe/Paris"


def test_interval_ticks_are_aligned_on_the_epoch() -> None:
    hourly = Schedule("hourly", domain=DOMAIN, command_type="Report", every=3600)
    assert hourly.latest_tick(T0) == datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    assert hourly.next_tick(T0) == datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
    assert hourly.spec == "every 3600s"
    assert len({hourly, hourly}) == 1  # hashable, although its data is a dict
    tick = hourly.latest_tick(T0)
    assert hourly.command_id(tick) == hourly.command_id(tick)  # the same in every process
    assert hourly.command_id(tick) != hourly.command_id(hourly.next_tick(T0))


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "every day"}, "cron"),
        ({}, "cron"),
        ({"cron": "* * * * *", "every": 60}, "cron"),
        ({"every": 0.5}, "every"),
        ({"every": "60"}, "every"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "tz"),
        ({"every": 60, "tz": "Europe/Paris"}, "tz"),
        ({"every": 60, "missed": "all"}, "missed"),
        ({"every": 60, "data": {"x": object()}}, "data"),
        ({"every": 60, "domain": "bad domain"}, "domain"),
        ({"every": 60, "priority": 12}, "priority"),
    ],
)
def test_bad_schedules_name_the_argument(options: dict[str, Any], field: str) -> None:
    options = {"domain": DOMAIN, "command_type": "Report", **options}
    with pytest.raises(ValidationError) as caught:
        Schedule("s", **options)
    assert caught.value.field == field


async def test_a_scheduler_refuses_two_schedules_of_one_name(pool: AsyncConnectionPool) -> None:
    with pytest.raises(ValidationError, match="two schedules are named"):
        Scheduler(pool, [_every_minute(), _every_minute()])


async def test_a_new_schedule_starts_at_its_next_tick_and_sends_each_tick_once(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    clock = Clock()
    schedule = _every_minute()
    scheduler = Scheduler(pool, [schedule], schema=schema, now=clock)
    assert await scheduler.run_due() == []  # 10:00 passed before the schedule existed
    clock.advance(seconds=30)  # 10:01:00, on the tick
    (sent,) = await scheduler.run_due()
    assert sent.tick == datetime(2026, 3, 10, 10, 1, tzinfo=UTC)
    assert sent.command_id == schedule.command_id(sent.tick)
    assert await scheduler.run_due() == []
    clock.advance(seconds=59)
    assert await scheduler.run_due() == []
    command = await bus.get_command(DOMAIN, sent.command_id)
    assert command is not None and command.command_type == "Report"
    assert command.status == CommandStatus.PENDING
    (state,) = await list_schedules(pool, schema=schema)
    assert (state.name, state.spec, state.last_command_id) == (
        "minutely",
        "every 60s",
        sent.command_id,
    )
    assert state.next_tick == datetime(2026, 3, 10, 10, 2, tzinfo=UTC)


async def test_missed_ticks_send_the_latest_once(pool: AsyncConnectionPool, schema: str) -> None:
    clock = Clock()
    await Scheduler(pool, [_every_minute()], schema=schema, now=clock).run_due()
    clock.advance(minutes=10)  # nothing ran for ten ticks
    scheduler = Scheduler(pool, [_every_minute()], schema=schema, now=clock)
    (sent,) = await scheduler.run_due()
    assert sent.tick == datetime(2026, 3, 10, 10, 10, tzinfo=UTC)
    assert await scheduler.run_due() == []
    assert len(await _commands(pool, schema)) == 1


async def test_missed_skip_passes_over_a_late_tick(pool: AsyncConnectionPool, schema: str) -> None:
    clock = Clock()
    every_5 = Schedule(
        "five", domain=DOMAIN, command_type="Report", every=timedelta(minutes=5), missed="skip"
    )
    scheduler = Scheduler(pool, [every_5], schema=schema, now=clock)
    await scheduler.run_due()
    clock.now = datetime(2026, 3, 10, 10, 6, 1, tzinfo=UTC)  # the 10:05 tick, 61 s late
    (over,) = await scheduler.run_due()
    assert over.tick == datetime(2026, 3, 10, 10, 5, tzinfo=UTC) and over.command_id is None
    clock.now = datetime(2026, 3, 10, 10, 10, 59, tzinfo=UTC)  # 10:10, 59 s late: on time
    (sent,) = await scheduler.run_due()
    assert sent.command_id is not None
    assert [r[0] for r in await _commands(pool, schema)] == [sent.command_id]


async def test_two_schedulers_racing_send_each_tick_exactly_once(
    pool: AsyncConnectionPool, schema: str
) -> None:
    clock = Clock()
    schedules = [
        _every_minute(),
        Schedule("other", domain=DOMAIN, command_type="Other", cron="*/2 * * * *"),
    ]
    racers = [Scheduler(pool, schedules, schema=schema, now=clock) for _ in range(3)]
    await asyncio.gather(*(r.run_due() for r in racers))  # registered at 10:00:30
    claimed = []
    for _ in range(20):
        clock.advance(minutes=1)
        for result in await asyncio.gather(*(r.run_due() for r in racers)):
            claimed.extend(result)
    ticks = [(c.schedule, c.tick) for c in claimed]
    assert len(ticks) == len(set(ticks)) == 20 + 10
    rows = await _commands(pool, schema)
    assert len(rows) == 30
    assert {r[0] for r in rows} == {c.command_id for c in claimed}


async def test_a_tick_claimed_twice_is_still_sent_once(
    pool: AsyncConnectionPool, schema: str
) -> None:
    clock = Clock()
    scheduler = Scheduler(pool, [_every_minute()], schema=schema, now=clock)
    await scheduler.run_due()
    clock.advance(minutes=1)
    (sent,) = await scheduler.run_due()
    # Someone rewinds the state by hand: the tick is claimed again, its send is a duplicate.
    await execute(
        pool, schema, "UPDATE {schema}.schedules SET last_tick = last_tick - interval '1 minute'"
    )
    again = await Scheduler(pool, [_every_minute()], schema=schema, now=clock).run_due()
    assert [s.command_id for s in again] == [sent.command_id]
    assert len(await _commands(pool, schema)) == 1


async def test_a_changed_definition_restarts_at_its_next_tick(
    pool: AsyncConnectionPool, schema: str
) -> None:
    clock = Clock()
    await Scheduler(pool, [_every_minute()], schema=schema, now=clock).run_due()
    clock.advance(minutes=5)
    hourly = Schedule("minutely", domain=DOMAIN, command_type="Report", every=120)
    assert await Scheduler(pool, [hourly], schema=schema, now=clock).run_due() == []
    (state,) = await list_schedules(pool, schema=schema)
    assert state.spec == "every 120s" and state.last_command_id is None
    assert await _commands(pool, schema) == []


async def test_a_worker_runs_its_schedules(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    registry = HandlerRegistry()
    seen: list[uuid.UUID] = []

    @registry.handler(DOMAIN, "Tick")
    async def tick(command: Any, ctx: Any) -> None:
        seen.append(command.command_id)

    every_second = Schedule("every-second", domain=DOMAIN, command_type="Tick", every=1)
    worker = make_worker(pool, schema, registry, schedules=[every_second])
    assert worker.scheduler is not None
    async with running(worker):

        async def two_ticks() -> bool:
            return len(seen) >= 2

        await wait_until(two_ticks, what="two ticks sent by the worker's scheduler and run")
    assert len(set(seen)) == len(seen)
