"""``commandbus stats``: commands by domain and status, queue depth and age per domain,
and the paused domains."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus.cli._args import Parser
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, table
from commandbus.models import CommandStatus
from commandbus.stats import read_stats


def add_parser(commands: Any, common: Parser) -> None:
    parser = commands.add_parser(
        "stats",
        parents=[common],
        help="counts by domain and status, queue depth and oldest pending age",
        description="Commands by domain and status; per domain, queued messages, those "
        "ready now, the age of the oldest (s), the longest wait of a ready one (s), and "
        "whether the domain is paused (its ready commands then wait for 'commandbus "
        "resume', not for a worker).",
    )
    parser.set_defaults(run=with_pool(_stats))


async def _stats(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    stats = await read_stats(pool, schema=args.schema)
    commands = [
        {"domain": domain, **by_status, "total": sum(by_status.values())}
        for domain, by_status in stats.commands.items()
    ]
    queue = [dataclasses.asdict(q) for q in stats.queue]

    def human() -> str:
        statuses = [s.value for s in CommandStatus]
        by_domain = table(
            ["DOMAIN", *[s.replace("IN_TROUBLESHOOTING_QUEUE", "TSQ") for s in statuses], "TOTAL"],
            [[c["domain"], *[c[s] for s in statuses], c["total"]] for c in commands],
            empty="no commands",
        )
        depth = table(
            ["DOMAIN", "QUEUED", "READY", "OLDEST PENDING (s)", "LONGEST READY WAIT (s)", ""],
            [
                [
                    q.domain,
                    q.depth,
                    q.ready,
                    q.oldest_pending_age,
                    q.ready_wait,
                    "PAUSED" if q.paused else "",
                ]
                for q in stats.queue
            ],
            empty="the queue is empty",
        )
        text = f"commands:\n{by_domain}\n\nqueue:\n{depth}"
        if stats.paused:
            paused = table(
                ["DOMAIN", "PAUSED AT", "BY", "REASON"],
                [[p.domain, p.paused_at, p.operator, p.reason] for p in stats.paused],
                empty="",
            )
            text += "\n\npaused (workers start none of their commands; resume with "
            text += f"'commandbus resume DOMAIN'):\n{paused}"
        return text

    emit(args, {"commands": commands, "queue": queue, "paused": stats.paused}, human)
