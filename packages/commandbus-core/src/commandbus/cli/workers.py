"""``commandbus workers``: the worker registry, with stale rows (processes killed hard)."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus._registry import KINDS, list_workers
from commandbus._validation import check_name, check_schema
from commandbus.cli._args import Parser
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, table

_HEADERS = [
    *("ID", "KIND", "DOMAIN/QUEUE", "IN FLIGHT", "CONCURRENCY", "VERSION", "STARTED"),
    *("HEARTBEAT (s ago)", "STATE"),
]


def add_parser(commands: Any, common: Parser) -> None:
    parser = commands.add_parser(
        "workers",
        parents=[common],
        help="running workers and reply routers, with their heartbeats",
        description="The worker registry: every running Worker and ProcessReplyRouter, "
        "where it runs, what it serves, its commands in flight and its last heartbeat. "
        "A row is STALE when its heartbeat is older than three intervals (a process killed "
        "hard, hung, or cut off from the database).",
    )
    parser.add_argument("--domain", help="only this domain (or a router's reply queue)")
    parser.add_argument("--kind", choices=KINDS, help="only workers or only routers")
    parser.set_defaults(run=with_pool(_workers))


async def _workers(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    domain = None if args.domain is None else check_name("domain", args.domain)
    schema = check_schema(args.schema)
    found = await list_workers(pool, schema=schema, domain=domain, kind=args.kind)

    def human() -> str:
        return table(
            _HEADERS,
            [
                [
                    *(w.id, w.kind, w.domain, w.in_flight, w.concurrency, w.version),
                    *(w.started_at, w.heartbeat_age, "STALE" if w.stale else "live"),
                ]
                for w in found
            ],
            empty="no worker or router is registered",
        )

    emit(args, found, human)
