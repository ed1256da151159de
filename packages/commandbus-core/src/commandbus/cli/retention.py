"""``commandbus prune [--older-than 7d] [--dry-run]``: delete finished work now.

Workers do this every minute by default (``Worker(retention=...)``); the command is for a
first clean-up after an upgrade, for deployments that turned it off, and to see what a
prune would delete (``--dry-run``).
"""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus._validation import MAX_CHUNK_SIZE, MAX_DELAY, MAX_SECONDS, check_schema
from commandbus.cli._args import Parser, int_range
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, fields
from commandbus.pruner import DEFAULT_RETENTION, Pruner, Retention

__all__ = ["add_parser", "duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


def duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` or sums like ``1d12h``; more than
    0 and at most 36500d (100 years, as every age and delay of the library)."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip().replace(" ", ""):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (e.g. 7d, 12h, 30m, 90s, 1d12h)"
        )
    seconds = sum(float(n) * _UNITS[u or "s"] for n, u in parts)
    if not 0 < seconds <= MAX_SECONDS:  # float("9" * 400) is inf: refused here too
        raise argparse.ArgumentTypeError(
            f"must be longer than 0 and at most {MAX_DELAY.days}d, got {text!r}"
        )
    return timedelta(seconds=seconds)


def add_parser(commands: Any, common: Parser) -> None:
    parser = commands.add_parser(
        "prune",
        parents=[common],
        help="delete finished commands, batches and processes older than an age",
        description=(__doc__ or "").replace("``", "")
        + " Deleted: finished commands (COMPLETED, FAILED, CANCELED) with their audit "
        "rows and replies, finished batches and processes. Never: the troubleshooting "
        "queue, pending or running commands, nor anything of an unfinished batch or process.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    days = DEFAULT_RETENTION.older_than.days
    parser.add_argument(
        "--older-than",
        type=duration,
        default=DEFAULT_RETENTION.older_than,
        metavar="AGE",
        help=f"finished before this long ago, e.g. 7d, 12h, 30m (default {days}d)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int_range(1, MAX_CHUNK_SIZE),
        default=DEFAULT_RETENTION.chunk_size,
        metavar="N",
        help=f"most rows per statement (default {DEFAULT_RETENTION.chunk_size})",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted; delete nothing"
    )
    parser.set_defaults(run=with_pool(_prune))


async def _prune(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    retention = Retention(older_than=args.older_than, chunk_size=args.chunk_size)
    pruner = Pruner(pool, retention, schema=check_schema(args.schema))
    result = await pruner.prune(dry_run=args.dry_run)
    if result is None:
        emit(
            args,
            {"skipped": "another pruner holds the lock"},
            lambda: "skipped: another pruner (a worker's) is pruning right now",
        )
        return
    verb = "would delete" if args.dry_run else "deleted"
    emit(
        args,
        {**_as_dict(result), "dry_run": args.dry_run},
        lambda: fields(
            [
                ("finished before", result.cutoff),
                (f"commands {verb}", result.commands),
                (f"batches {verb}", result.batches),
                (f"processes {verb}", result.processes),
            ]
        ),
    )


def _as_dict(result: Any) -> dict[str, Any]:
    return {
        "commands": result.commands,
        "batches": result.batches,
        "processes": result.processes,
        "cutoff": result.cutoff,
    }
