"""``commandbus pause DOMAIN --reason R``, ``resume DOMAIN`` and ``paused``.

A paused domain's workers (every process) start none of its commands from their next
dequeue on, within their poll interval; commands already running finish and sending goes
on. ``resume`` wakes them at once.
"""

from __future__ import annotations

import argparse
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus._validation import check_schema
from commandbus.cli._args import Parser, add_operator, add_reason
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, table
from commandbus.domains import list_paused, pause_domain, resume_domain


def add_parser(commands: Any, common: Parser) -> None:
    pause = commands.add_parser(
        "pause",
        parents=[common],
        help="stop every worker of a domain from starting its commands",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pause.add_argument("domain", metavar="DOMAIN")
    add_reason(pause, required=True, help="why (stored and logged)")
    add_operator(pause)
    pause.set_defaults(run=with_pool(_pause))

    resume = commands.add_parser(
        "resume", parents=[common], help="let a paused domain's workers start commands again"
    )
    resume.add_argument("domain", metavar="DOMAIN")
    add_operator(resume)
    resume.set_defaults(run=with_pool(_resume))

    paused = commands.add_parser("paused", parents=[common], help="list the paused domains")
    paused.set_defaults(run=with_pool(_paused))


async def _pause(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    done = await pause_domain(
        pool,
        args.domain,
        operator=args.operator,
        reason=args.reason,
        schema=check_schema(args.schema),
    )
    emit(args, done, lambda: f"paused {done.domain}: workers start none of its commands")


async def _resume(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    resumed = await resume_domain(
        pool, args.domain, operator=args.operator, schema=check_schema(args.schema)
    )
    emit(
        args,
        {"domain": args.domain, "resumed": resumed},
        lambda: f"resumed {args.domain}" if resumed else f"{args.domain} was not paused",
    )


async def _paused(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    found = await list_paused(pool, schema=check_schema(args.schema))
    emit(
        args,
        found,
        lambda: table(
            ["DOMAIN", "PAUSED AT", "BY", "REASON"],
            [[p.domain, p.paused_at, p.operator, p.reason] for p in found],
            empty="no domain is paused",
        ),
    )
