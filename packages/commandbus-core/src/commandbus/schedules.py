"""Periodic commands: a :class:`Schedule` sends a given command on a cron expression (in a
time zone) or every fixed interval; a :class:`Scheduler` sends each tick's command.

Any number of schedulers may serve the same schedules (every worker process, say): each
tick is sent once. Claiming a tick moves the schedule's ``last_tick`` in the
``schedules`` table in the transaction that sends the command, so a second scheduler
finds the tick taken; and the command's id is derived from the schedule's name and the
tick (``Schedule.command_id``), so even a tick claimed twice (its state row deleted by
hand) is sent once: the second send is a duplicate, and skipped.

Missed ticks (nothing ran at the time): with ``missed="latest"`` (the default) the
latest missed tick is sent once, when a scheduler next runs, and the earlier ones are
passed over; with ``missed="skip"`` a tick found more than :data:`ON_TIME` late is
passed over. A schedule seen for the first time, or whose definition (cron, interval,
time zone, domain, command type) changed, starts at its next tick: nothing is sent for
ticks before it existed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._db import autocommit_connection, fetch_all, fetch_one
from commandbus._errors import DuplicateCommandError, ValidationError
from commandbus._periodic import RoundService
from commandbus._validation import (
    MAX_INTERVAL_S,
    check_age,
    check_max_attempts,
    check_name,
    check_positive_seconds,
    check_priority,
    check_schema,
    dump_json_object,
)
from commandbus.bus import CommandBus

__all__ = ["ON_TIME", "Schedule", "ScheduleState", "ScheduledSend", "Scheduler", "list_schedules"]

log = logging.getLogger("commandbus.schedules")

#: With ``missed="skip"``, a tick found later than this after its time is passed over.
ON_TIME = timedelta(minutes=1)
#: Namespace of the ids of scheduled commands (uuid5 of "name|tick").
_NAMESPACE = uuid.UUID("5f1c4a52-63a4-4d55-9a4b-2f5c7bd3e0a1")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A command sent periodically: on ``cron`` (5 fields, or 6 with seconds first; read
    in time zone ``tz``) or ``every`` interval (a timedelta or seconds, ticks aligned on
    the Unix epoch in UTC: ``every=timedelta(hours=1)`` ticks on the hour).

    ``Schedule("nightly-report", domain="reports", command_type="BuildReport",
    cron="0 3 * * *", tz="Europe/Paris")``
    """

    name: str
    _: KW_ONLY
    domain: str
    command_type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    cron: str | None = None
    every: timedelta | float | None = None
    tz: str = "UTC"
    missed: Literal["latest", "skip"] = "latest"
    max_attempts: int | None = None
    priority: int = 0

    def __post_init__(self) -> None:
        check_name("name", self.name)
        check_name("domain", self.domain)
        check_name("command_type", self.command_type)
        data = dict(self.data) if isinstance(self.data, Mapping) else self.data
        dump_json_object("data", data)
        object.__setattr__(self, "data", data)
        if (self.cron is None) == (self.every is None):
            raise ValidationError("cron", "give exactly one of cron= and every=")
        try:
            zone = ZoneInfo(self.tz) if isinstance(self.tz, str) else None
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
        if zone is None:
            raise ValidationError("tz", f"must be an IANA time zone name, got {self.tz!r}")
        if self.cron is not None:
            _check_cron(self.cron, zone)
        else:
            every = check_age("every", self.every, at_least=1)
            if self.tz != "UTC":
                raise ValidationError("tz", "applies to cron= only (every= ticks in UTC)")
            object.__setattr__(self, "every", every)
        if self.missed not in ("latest", "skip"):
            raise ValidationError("missed", f"must be 'latest' or 'skip', got {self.missed!r}")
        if self.max_attempts is not None:
            check_max_attempts(self.max_attempts, 1)
        check_priority(self.priority)

    def __hash__(self) -> int:  # data is a dict: hash by the name, unique per scheduler
        return hash(self.name)

    @property
    def spec(self) -> str:
        """The definition as stored: ``cron <expression> <tz>`` or ``every <seconds>s``."""
        if self.cron is not None:
            return f"cron {' '.join(self.cron.split())} {self.tz}"
        assert isinstance(self.every, timedelta)
        return f"every {self.every.total_seconds():g}s"

    def latest_tick(self, now: datetime) -> datetime:
        """The latest tick at or before ``now`` (UTC)."""
        now = _aware(now)
        if isinstance(self.every, timedelta):
            return _EPOCH + ((now - _EPOCH) // self.every) * self.every
        from cronsim import CronSim

        assert self.cron is not None
        local = now.astimezone(ZoneInfo(self.tz)).replace(microsecond=0) + timedelta(seconds=1)
        return next(CronSim(self.cron, local, reverse=True)).astimezone(UTC)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick after ``after`` (UTC)."""
        after = _aware(after)
        if isinstance(self.every, timedelta):
            return self.latest_tick(after) + self.every
        from cronsim import CronSim

        assert self.cron is not None
        local = after.astimezone(ZoneInfo(self.tz)).replace(microsecond=0)
        return next(CronSim(self.cron, local)).astimezone(UTC)

    def command_id(self, tick: datetime) -> uuid.UUID:
        """The id of the command sent for ``tick``: the same in every process."""
        return uuid.uuid5(_NAMESPACE, f"{self.name}|{_aware(tick).astimezone(UTC).isoformat()}")


@dataclass(frozen=True, slots=True)
class ScheduledSend:
    """A tick a scheduler claimed: the command it sent, or None if passed over."""

    schedule: str
    tick: datetime
    command_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """A row of the ``schedules`` table (``commandbus schedules``). ``last_tick`` and
    ``updated_at`` are None only for a schedule listed from code that no scheduler has
    served with its current definition."""

    name: str
    spec: str
    domain: str
    command_type: str
    last_tick: datetime | None
    last_command_id: uuid.UUID | None
    next_tick: datetime
    updated_at: datetime | None


class Scheduler(RoundService):
    """Sends the commands of ``schedules`` at their ticks until :meth:`stop`.

    ``now`` (a callable returning an aware datetime) replaces the clock, for tests;
    ``await scheduler.run_due()`` sends what is due now, once. A round waits until the
    next tick, ``max_wait`` seconds at most.
    """

    kind: ClassVar[str] = "scheduler"
    log: ClassVar[logging.Logger] = log

    def __init__(
        self,
        pool: AsyncConnectionPool,
        schedules: Sequence[Schedule],
        *,
        schema: str = "commandbus",
        now: Callable[[], datetime] | None = None,
        max_wait: float = 60.0,
    ) -> None:
        self.pool = pool
        self.schema = check_schema(schema)
        self.schedules = check_schedules(schedules)
        self.max_wait = check_positive_seconds("max_wait", max_wait, at_most=MAX_INTERVAL_S)
        self._now = now if now is not None else _utc_now
        self._bus = CommandBus(pool, schema=self.schema)
        #: Last tick known taken, per schedule (None: register it first).
        self._last: dict[str, datetime] = {}
        self._init_rounds()

    def next_runs(self, now: datetime | None = None) -> list[tuple[Schedule, datetime]]:
        """Each schedule with its next tick after ``now``."""
        at = self._now() if now is None else now
        return [(s, s.next_tick(at)) for s in self.schedules]

    async def _round(self) -> float:
        await self.run_due()
        if not self.schedules:
            return self.max_wait
        now = self._now()
        soonest = min(s.next_tick(now) for s in self.schedules)
        return min(max((soonest - now).total_seconds(), 0.0), self.max_wait)

    async def run_due(self) -> list[ScheduledSend]:
        """Claim and send each schedule's due tick (if another scheduler has not)."""
        now = _aware(self._now())
        claimed: list[ScheduledSend] = []
        for schedule in self.schedules:
            last = self._last.get(schedule.name)
            if last is None:
                last = self._last[schedule.name] = await self._register(schedule, now)
            tick = schedule.latest_tick(now)
            if tick <= last:
                continue
            done = await self._claim(schedule, tick, now)
            if done is not None:
                claimed.append(done)
        return claimed

    async def _register(self, schedule: Schedule, now: datetime) -> datetime:
        params = {
            "name": schedule.name,
            "spec": schedule.spec,
            "domain": schedule.domain,
            "command_type": schedule.command_type,
            "last_tick": schedule.latest_tick(now),
            "next_tick": schedule.next_tick(now),
        }
        query = _sql.query("schedule_register", self.schema)
        async with autocommit_connection(self.pool) as conn:
            row = await fetch_one(conn, query, params)
            if row is None:  # registered concurrently by another scheduler: read it now
                row = await fetch_one(conn, query, params)
        assert row is not None
        last: datetime = row[0]
        return last

    async def _claim(
        self, schedule: Schedule, tick: datetime, now: datetime
    ) -> ScheduledSend | None:
        send = schedule.missed == "latest" or now - tick <= ON_TIME
        command_id = schedule.command_id(tick) if send else None
        params = {
            "name": schedule.name,
            "spec": schedule.spec,
            "tick": tick,
            "command_id": command_id,
            "next_tick": schedule.next_tick(now),
        }
        async with self.pool.connection() as conn, conn.transaction():
            row = await fetch_one(conn, _sql.query("schedule_claim", self.schema), params)
            if row is None:
                # Taken by another scheduler, or redefined: read the state again next time.
                self._last.pop(schedule.name, None)
                return None
            if command_id is not None:
                try:
                    await self._bus.send(
                        schedule.domain,
                        schedule.command_type,
                        command_id,
                        dict(schedule.data),
                        max_attempts=schedule.max_attempts,
                        priority=schedule.priority,
                        conn=conn,
                    )
                except DuplicateCommandError:
                    log.info("schedule %s: tick %s was sent already", schedule.name, tick)
        self._last[schedule.name] = tick
        if command_id is None:
            log.info("schedule %s: tick %s passed over (missed=skip)", schedule.name, tick)
        else:
            log.info(
                "schedule %s: sent %s/%s %s for tick %s",
                schedule.name,
                schedule.domain,
                schedule.command_type,
                command_id,
                tick.isoformat(),
            )
        return ScheduledSend(schedule.name, tick, command_id)


async def list_schedules(
    pool: AsyncConnectionPool, *, schema: str = "commandbus"
) -> list[ScheduleState]:
    """The schedules the schedulers serve (or served), by name, with their last and next
    ticks as last stored."""
    async with autocommit_connection(pool) as conn:
        rows = await fetch_all(conn, _sql.query("schedule_list", check_schema(schema)), {})
    return [ScheduleState(*row) for row in rows]


def check_schedules(schedules: object) -> tuple[Schedule, ...]:
    if isinstance(schedules, str | bytes | Schedule) or not isinstance(schedules, Sequence):
        raise ValidationError("schedules", "must be a list of commandbus.Schedule")
    seen: set[str] = set()
    for index, schedule in enumerate(schedules):
        if not isinstance(schedule, Schedule):
            raise ValidationError(
                f"schedules[{index}]", f"must be a Schedule, got {type(schedule).__name__}"
            )
        if schedule.name in seen:
            raise ValidationError("schedules", f"two schedules are named {schedule.name!r}")
        seen.add(schedule.name)
    return tuple(schedules)


def _check_cron(expr: object, zone: ZoneInfo) -> None:
    from cronsim import CronSim, CronSimError

    if not isinstance(expr, str):
        raise ValidationError("cron", f"must be a cron expression, got {type(expr).__name__}")
    try:
        next(CronSim(expr, datetime.now(zone)))
    except (CronSimError, ValueError, StopIteration) as exc:
        raise ValidationError("cron", f"{expr!r} is not a valid cron expression ({exc})") from None


def _aware(moment: datetime) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValidationError("now", f"must be a timezone-aware datetime, got {moment!r}")
    return moment


def _utc_now() -> datetime:
    return datetime.now(UTC)
