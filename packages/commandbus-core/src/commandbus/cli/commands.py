"""``commandbus commands list|show``: commands as the system of record has them."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus._errors import CommandNotFoundError
from commandbus.bus import CommandBus
from commandbus.cli._args import Parser, add_paging, uuid_arg
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, fields, table
from commandbus.models import AuditEvent, CommandMetadata, CommandStatus


def add_parser(commands: Any, common: Parser) -> None:
    group = commands.add_parser("commands", help="list and inspect commands")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="commands, newest first")
    listing.add_argument("--domain")
    listing.add_argument("--status", choices=[s.value for s in CommandStatus])
    listing.add_argument("--type", dest="command_type", metavar="TYPE")
    add_paging(listing)
    listing.set_defaults(run=with_pool(_list))

    show = actions.add_parser("show", parents=[common], help="one command and its audit trail")
    show.add_argument("domain", metavar="DOMAIN")
    show.add_argument("command_id", metavar="ID", type=uuid_arg)
    show.set_defaults(run=with_pool(_show))


async def _list(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    found = await CommandBus(pool, schema=args.schema).query_commands(
        domain=args.domain,
        status=args.status,
        command_type=args.command_type,
        limit=args.limit,
        offset=args.offset,
    )
    emit(args, found, lambda: command_table(found, empty="no commands found"))


def command_table(found: list[CommandMetadata], *, empty: str) -> str:
    headers = ["DOMAIN", "COMMAND ID", "TYPE", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR"]
    rows = [
        [
            c.domain,
            c.command_id,
            c.command_type,
            c.status,
            f"{c.attempts}/{c.max_attempts}",
            c.created_at,
            c.last_error_code,
        ]
        for c in found
    ]
    return table(headers, rows, empty=empty)


async def _show(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    bus = CommandBus(pool, schema=args.schema)
    command = await bus.get_command(args.domain, args.command_id)
    if command is None:
        raise CommandNotFoundError(args.domain, args.command_id)
    trail = await bus.get_audit_trail(args.command_id, domain=args.domain)
    emit(args, {"command": command, "audit_trail": trail}, lambda: _describe(command, trail))


def _describe(c: CommandMetadata, trail: list[AuditEvent]) -> str:
    about = fields(
        [
            ("domain", c.domain),
            ("command id", c.command_id),
            ("type", c.command_type),
            ("status", c.status),
            ("attempts", f"{c.attempts}/{c.max_attempts}"),
            ("data", c.data),
            ("result", c.result),
            ("correlation id", c.correlation_id),
            ("reply to", c.reply_to),
            ("batch id", c.batch_id),
            ("last error", _error(c)),
            ("created", c.created_at),
            ("updated", c.updated_at),
        ]
    )
    events = table(
        ["AUDIT ID", "AT", "EVENT", "DETAILS"],
        [[e.audit_id, e.created_at, e.event_type, e.details] for e in trail],
        empty="(no audit events)",
    )
    return f"{about}\n\naudit trail:\n{events}"


def _error(c: CommandMetadata) -> str | None:
    parts = [p for p in (c.last_error_type, c.last_error_code, c.last_error_message) if p]
    return " | ".join(parts) if parts else None
