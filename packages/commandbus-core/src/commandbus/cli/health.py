"""``commandbus health``: exit 0 when every check passes, 1 otherwise; one line per check.

Checks, in order: the database answers; the schema has every migration; with
``--domain``, a worker of that domain has a fresh heartbeat; the oldest deliverable
command has waited at most ``--max-pending-age`` seconds; the troubleshooting queue holds
at most ``--max-troubleshooting`` commands. Without a limit the last two only report. An
unreachable database is a failing check (exit 1), not an error.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import psycopg

from commandbus._validation import check_name, check_schema
from commandbus.cli._args import Parser, non_negative_int, non_negative_seconds
from commandbus.cli._connect import CONNECT_TIMEOUT, open_pool
from commandbus.cli._output import emit
from commandbus.health import check_health
from commandbus.models import HealthCheck, HealthReport


def add_parser(commands: Any, common: Parser) -> None:
    parser = commands.add_parser(
        "health",
        parents=[common],
        help="check the database, schema, workers, backlog and troubleshooting queue",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--domain", help="check this domain's workers; count only its commands")
    parser.add_argument(
        "--max-pending-age",
        type=non_negative_seconds,
        metavar="SECONDS",
        help="fail when a deliverable command has waited longer for a worker",
    )
    parser.add_argument(
        "--max-troubleshooting",
        type=non_negative_int,
        metavar="N",
        help="fail when more commands wait in the troubleshooting queue",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    schema = check_schema(args.schema)
    domain = None if args.domain is None else check_name("domain", args.domain)
    report = asyncio.run(_check(args, schema, domain))
    emit(args, {"ok": report.ok, "checks": report.checks}, lambda: _human(report))
    return 0 if report.ok else 1


async def _check(args: argparse.Namespace, schema: str, domain: str | None) -> HealthReport:
    try:
        async with open_pool(args, max_size=1) as pool:
            return await check_health(
                pool,
                schema=schema,
                domain=domain,
                max_pending_age=args.max_pending_age,
                max_troubleshooting=args.max_troubleshooting,
                timeout=CONNECT_TIMEOUT * 2,
            )
    except psycopg.OperationalError as exc:  # the first, direct connection failed
        reason = " ".join((exc.diag.message_primary or str(exc)).split())
        return HealthReport([HealthCheck("database", False, f"unreachable: {reason}")])


def _human(report: HealthReport) -> str:
    return "\n".join(f"{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in report.checks)
