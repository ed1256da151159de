"""``commandbus stats``: commands by domain and status, queue depth and age per domain."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._db import fetch
from commandbus._validation import check_schema
from commandbus.cli._args import Parser
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, table
from commandbus.models import CommandStatus

_QUEUE_FIELDS = ("domain", "depth", "ready", "oldest_pending_age", "ready_wait")


def add_parser(commands: Any, common: Parser) -> None:
    parser = commands.add_parser(
        "stats",
        parents=[common],
        help="counts by domain and status, queue depth and oldest pending age",
        description="Commands by domain and status; per domain, queued messages, those "
        "ready now, the age of the oldest (s) and the longest wait of a ready one (s).",
    )
    parser.set_defaults(run=with_pool(_stats))


async def _stats(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    schema = check_schema(args.schema)
    counts: dict[str, dict[str, int]] = {}
    for domain, status, n in await fetch(pool, _sql.query("stats_commands", schema), {}):
        counts.setdefault(domain, {s.value: 0 for s in CommandStatus})[status] = n
    queue = [
        dict(zip(_QUEUE_FIELDS, row, strict=True))
        for row in await fetch(pool, _sql.query("stats_queue", schema), {})
    ]
    commands = [
        {"domain": domain, **by_status, "total": sum(by_status.values())}
        for domain, by_status in counts.items()
    ]

    def human() -> str:
        statuses = [s.value for s in CommandStatus]
        by_domain = table(
            ["DOMAIN", *[s.replace("IN_TROUBLESHOOTING_QUEUE", "TSQ") for s in statuses], "TOTAL"],
            [[c["domain"], *[c[s] for s in statuses], c["total"]] for c in commands],
            empty="no commands",
        )
        depth = table(
            ["DOMAIN", "QUEUED", "READY", "OLDEST PENDING (s)", "LONGEST READY WAIT (s)"],
            [[q[f] for f in _QUEUE_FIELDS] for q in queue],
            empty="the queue is empty",
        )
        return f"commands:\n{by_domain}\n\nqueue:\n{depth}"

    emit(args, {"commands": commands, "queue": queue}, human)
