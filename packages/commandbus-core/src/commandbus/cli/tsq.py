"""``commandbus tsq list|retry|cancel|complete``: the troubleshooting queue for operators.

Every action is recorded in the command's audit trail with ``--operator`` (default $USER).
"""

from __future__ import annotations

import argparse
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus.cli._args import Parser, add_operator, add_paging, json_object, uuid_arg
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, table
from commandbus.troubleshooting import TroubleshootingQueue


def add_parser(commands: Any, common: Parser) -> None:
    group = commands.add_parser("tsq", help="the troubleshooting queue: list, retry, cancel...")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="commands waiting for an operator")
    listing.add_argument("--domain")
    add_paging(listing)
    listing.set_defaults(run=with_pool(_list))

    helps = {
        "retry": "deliver the command again with a fresh attempt budget",
        "cancel": "end the command as CANCELED (its reply_to gets CANCELED)",
        "complete": "end the command as COMPLETED (its reply_to gets SUCCESS)",
    }
    for action, text in helps.items():
        parser = actions.add_parser(action, parents=[common], help=text, description=text)
        parser.add_argument("domain", metavar="DOMAIN")
        parser.add_argument("command_id", metavar="ID", type=uuid_arg)
        add_operator(parser)
        parser.set_defaults(run=with_pool(_act))
        if action == "cancel":
            parser.add_argument("--reason", required=True, help="why (recorded in the audit)")
        if action == "complete":
            parser.add_argument(
                "--result", type=json_object, metavar="JSON", help="the command's result object"
            )


async def _list(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    tsq = TroubleshootingQueue(pool, schema=args.schema)
    if args.domain is None:
        items = await tsq.list_all_troubleshooting(limit=args.limit, offset=args.offset)
    else:
        items = await tsq.list_troubleshooting(args.domain, limit=args.limit, offset=args.offset)
    headers = ["DOMAIN", "COMMAND ID", "TYPE", "ATTEMPTS", "PARKED", "ERROR"]
    rows = [
        [
            i.domain,
            i.command_id,
            i.command_type,
            f"{i.attempts}/{i.max_attempts}",
            i.updated_at,
            ": ".join(p for p in (i.last_error_code, i.last_error_message) if p) or None,
        ]
        for i in items
    ]
    emit(args, items, lambda: table(headers, rows, empty="the troubleshooting queue is empty"))


async def _act(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    tsq = TroubleshootingQueue(pool, schema=args.schema)
    target = (args.domain, args.command_id)
    if args.action == "retry":
        await tsq.operator_retry(*target, operator=args.operator)
        done = "retried"
    elif args.action == "cancel":
        await tsq.operator_cancel(*target, reason=args.reason, operator=args.operator)
        done = "canceled"
    else:
        await tsq.operator_complete(*target, result=args.result, operator=args.operator)
        done = "completed"
    report = {
        "action": args.action,
        "domain": args.domain,
        "command_id": args.command_id,
        "operator": args.operator,
    }
    by = f" by {args.operator}" if args.operator else ""
    emit(args, report, lambda: f"{done} command {args.command_id} in domain {args.domain!r}{by}")
