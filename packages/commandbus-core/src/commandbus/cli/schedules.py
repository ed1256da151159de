"""``commandbus schedules``: the periodic commands, with their last and next ticks.

Read from the ``schedules`` table, which the schedulers (``Worker(schedules=...)`` or a
``Scheduler``) keep: a schedule is listed once a scheduler has served it. A next tick in
the past means no scheduler serves it now (or it was removed from the code).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus._validation import check_schema
from commandbus.cli._args import Parser, UsageError
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, table
from commandbus.schedules import Schedule, ScheduleState, list_schedules

_HEADERS = ["NAME", "SCHEDULE", "SENDS", "LAST SENT", "NEXT TICK", "DUE IN (s)"]


def add_parser(commands: Any, common: Parser) -> None:
    parser = commands.add_parser(
        "schedules",
        parents=[common],
        help="periodic commands, with their last and next ticks",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--schedules",
        default=None,
        metavar="MODULE:ATTR",
        help="list the schedules of your code instead (e.g. shop.jobs:SCHEDULES), with the "
        "next ticks they define and the last tick the table has for each",
    )
    parser.set_defaults(run=with_pool(_schedules))


async def _schedules(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    found = await list_schedules(pool, schema=check_schema(args.schema))
    now = datetime.now(UTC)
    if args.schedules is not None:
        found = _from_code(load_schedules(args.schedules), found, now)

    def due(next_tick: datetime) -> str:
        seconds = (next_tick - now).total_seconds()
        return f"{seconds:.0f}" if seconds >= 0 else f"overdue {-seconds:.0f}"

    def human() -> str:
        return table(
            _HEADERS,
            [
                [
                    s.name,
                    s.spec,
                    f"{s.domain}/{s.command_type}",
                    # A tick that sent nothing (the one a new schedule starts after, or
                    # one skipped as missed) is not shown as if it had sent.
                    s.last_tick if s.last_command_id is not None else None,
                    s.next_tick,
                    due(s.next_tick),
                ]
                for s in found
            ],
            empty="no schedule" if args.schedules else "no schedule has been served yet",
        )

    emit(args, found, human)


def _from_code(
    schedules: list[Schedule], stored: list[ScheduleState], now: datetime
) -> list[ScheduleState]:
    """The schedules as the code defines them: the next tick from their definition, the
    last tick from the table when it holds the same definition (else None: never served,
    or served with another definition, so it starts afresh at its next tick)."""
    by_name = {state.name: state for state in stored}
    rows = []
    for schedule in schedules:
        state = by_name.get(schedule.name)
        same = state is not None and state.spec == schedule.spec
        rows.append(
            ScheduleState(
                name=schedule.name,
                spec=schedule.spec,
                domain=schedule.domain,
                command_type=schedule.command_type,
                last_tick=state.last_tick if same and state else None,
                last_command_id=state.last_command_id if same and state else None,
                next_tick=schedule.next_tick(now),
                updated_at=state.updated_at if same and state else None,
            )
        )
    return rows


def load_schedules(spec: str) -> list[Schedule]:
    """Import ``module:attribute`` (``commandbus worker --schedules``): a list of Schedule."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--schedules must look like 'package.module:SCHEDULES', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as with `python -m`: find modules of the project
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"--schedules: cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"--schedules: {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if isinstance(target, Schedule):
        return [target]
    if not isinstance(target, list | tuple) or not all(isinstance(s, Schedule) for s in target):
        raise UsageError(f"--schedules: {spec} is not a list of commandbus.Schedule")
    return list(target)
