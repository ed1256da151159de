"""``commandbus batches list|show``: batches with counters counted from their commands."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus._errors import BatchNotFoundError
from commandbus.bus import CommandBus
from commandbus.cli._args import Parser, add_paging, uuid_arg
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, fields, table
from commandbus.cli.commands import command_table
from commandbus.models import BatchStatus


def add_parser(commands: Any, common: Parser) -> None:
    group = commands.add_parser("batches", help="list and inspect batches")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="a domain's batches, newest first")
    listing.add_argument("--domain", required=True)
    listing.add_argument("--status", choices=[s.value for s in BatchStatus])
    add_paging(listing)
    listing.set_defaults(run=with_pool(_list))

    show = actions.add_parser("show", parents=[common], help="one batch and its commands")
    show.add_argument("domain", metavar="DOMAIN")
    show.add_argument("batch_id", metavar="ID", type=uuid_arg)
    add_paging(show, limit=100)
    show.set_defaults(run=with_pool(_show))


async def _list(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    found = await CommandBus(pool, schema=args.schema).list_batches(
        args.domain, status=args.status, limit=args.limit, offset=args.offset
    )
    headers = [
        "BATCH ID",
        "NAME",
        "STATUS",
        "TOTAL",
        "DONE",
        "FAILED",
        "CANCELED",
        "TSQ",
        "CREATED",
    ]
    rows = [
        [
            b.batch_id,
            b.name,
            b.status,
            b.total,
            b.completed,
            b.failed,
            b.canceled,
            b.in_troubleshooting,
            b.created_at,
        ]
        for b in found
    ]
    emit(args, found, lambda: table(headers, rows, empty="no batches found"))


async def _show(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    bus = CommandBus(pool, schema=args.schema)
    batch = await bus.get_batch(args.domain, args.batch_id)
    if batch is None:
        raise BatchNotFoundError(args.domain, args.batch_id)
    members = await bus.list_batch_commands(
        args.domain, args.batch_id, limit=args.limit, offset=args.offset
    )

    def human() -> str:
        about = fields(
            [
                ("batch id", batch.batch_id),
                ("domain", batch.domain),
                ("name", batch.name),
                ("status", batch.status),
                ("total", batch.total),
                ("pending", batch.pending),
                ("in progress", batch.in_progress),
                ("completed", batch.completed),
                ("failed", batch.failed),
                ("canceled", batch.canceled),
                ("in troubleshooting", batch.in_troubleshooting),
                ("custom data", batch.custom_data),
                ("created", batch.created_at),
                ("completed at", batch.completed_at),
            ]
        )
        return f"{about}\n\ncommands:\n{command_table(members, empty='(no commands)')}"

    emit(args, {"batch": batch, "commands": members}, human)
