"""``commandbus replies list|retry|discard``: replies the process routers parked.

A reply is parked when no router knows its process or process type, or when applying it
kept failing. Once the cause is fixed, ``retry`` puts it back on its queue (a fresh
attempt budget); ``discard`` drops it for good and needs a ``--reason``. Both are
recorded in the audit trail of the command the reply answers, with ``--operator``
(default $USER) and the reason.
"""

from __future__ import annotations

import argparse
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus._validation import MAX_BIGINT
from commandbus.cli._args import (
    Parser,
    UsageError,
    add_operator,
    add_paging,
    add_reason,
    int_range,
)
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, table
from commandbus.process import ProcessRepository

__all__ = ["add_parser"]

_parked_id = int_range(1, MAX_BIGINT)


def add_parser(commands: Any, common: Parser) -> None:
    group = commands.add_parser(
        "replies",
        help="replies the process routers parked: list, retry, discard",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="parked replies, oldest first")
    listing.add_argument("--queue", help="only this reply queue")
    add_paging(listing)
    listing.set_defaults(run=with_pool(_list))

    retry = actions.add_parser(
        "retry", parents=[common], help="put a parked reply back on its queue"
    )
    retry.add_argument("parked_id", metavar="ID", type=_parked_id)
    add_reason(retry, required=False, help="why (recorded in the audit trail)")
    add_operator(retry)
    retry.set_defaults(run=with_pool(_retry))

    discard = actions.add_parser("discard", parents=[common], help="drop a parked reply")
    discard.add_argument("parked_id", metavar="ID", type=_parked_id)
    add_reason(discard, required=True, help="why (recorded in the audit trail)")
    add_operator(discard)
    discard.set_defaults(run=with_pool(_discard))


async def _list(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    found = await ProcessRepository(pool, schema=args.schema).list_parked_replies(
        queue=args.queue, limit=args.limit, offset=args.offset
    )
    headers = ["ID", "QUEUE", "COMMAND", "OUTCOME", "PARKED", "WHY"]
    rows = [
        [
            p.parked_id,
            p.queue,
            f"{p.domain}/{p.command_type}/{p.command_id}",
            p.outcome,
            p.parked_at,
            f"{p.reason_code}: {p.reason}",
        ]
        for p in found
    ]
    emit(args, found, lambda: table(headers, rows, empty="no parked replies"))


async def _retry(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    repo = ProcessRepository(pool, schema=args.schema)
    await repo.retry_parked_reply(args.parked_id, operator=_operator(args), reason=args.reason)
    done = {"parked_id": args.parked_id, "action": "retried"}
    emit(args, done, lambda: f"parked reply {args.parked_id} is back on its queue")


async def _discard(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    repo = ProcessRepository(pool, schema=args.schema)
    await repo.discard_parked_reply(args.parked_id, operator=_operator(args), reason=args.reason)
    done = {"parked_id": args.parked_id, "action": "discarded"}
    emit(args, done, lambda: f"parked reply {args.parked_id} discarded")


def _operator(args: argparse.Namespace) -> str:
    if args.operator is None:
        raise UsageError("--operator is required: this process has no $USER to record")
    operator: str = args.operator
    return operator
