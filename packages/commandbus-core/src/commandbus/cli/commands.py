"""``commandbus commands list|show|cancel``: commands as the system of record has them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus.bus import CommandBus
from commandbus.cli._args import Parser, add_operator, add_paging, add_reason, uuid_arg
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, fields, table
from commandbus.models import CommandMetadata, CommandStatus
from commandbus.troubleshooting import TroubleshootingDetail, TroubleshootingQueue

__all__ = ["add_parser", "command_table", "show_command"]


def add_parser(commands: Any, common: Parser) -> None:
    group = commands.add_parser("commands", help="list and inspect commands")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="commands, newest first")
    listing.add_argument("--domain")
    listing.add_argument("--status", choices=[s.value for s in CommandStatus])
    listing.add_argument("--type", dest="command_type", metavar="TYPE")
    add_paging(listing)
    listing.set_defaults(run=with_pool(_list))

    show = actions.add_parser(
        "show", parents=[common], help="one command, its traceback and its audit trail"
    )
    show.add_argument("domain", metavar="DOMAIN")
    show.add_argument("command_id", metavar="ID", type=uuid_arg)
    show.set_defaults(run=with_pool(show_command))

    cancel = actions.add_parser(
        "cancel",
        parents=[common],
        help="cancel a command: at once if it is not running, else at its worker's next look",
    )
    cancel.add_argument("domain", metavar="DOMAIN")
    cancel.add_argument("command_id", metavar="ID", type=uuid_arg)
    add_reason(cancel, required=True, help="why (recorded in the audit trail)")
    add_operator(cancel)
    cancel.set_defaults(run=with_pool(_cancel))


async def _cancel(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    bus = CommandBus(pool, schema=args.schema)
    status = await bus.cancel(
        args.domain, args.command_id, reason=args.reason, operator=args.operator
    )
    said = (
        "canceled"
        if status == CommandStatus.CANCELED
        else "is running: its worker was asked to cancel it"
    )
    emit(
        args,
        {"domain": args.domain, "command_id": args.command_id, "status": status},
        lambda: f"command {args.command_id} in domain {args.domain!r} {said}",
    )


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


async def show_command(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    """``commands show`` and ``tsq show``: the whole row, traceback included, and the trail.

    JSON: ``{"command": {...}, "audit_trail": [...]}``; the command's fields are those of
    :class:`~commandbus.CommandMetadata` plus ``last_error_traceback``.
    """
    detail = await TroubleshootingQueue(pool, schema=args.schema).show(args.domain, args.command_id)
    report = {"command": _command_fields(detail), "audit_trail": detail.audit_trail}
    emit(args, report, lambda: _describe(detail))


def _command_fields(d: TroubleshootingDetail) -> dict[str, Any]:
    return {
        "domain": d.domain,
        "command_id": d.command_id,
        "command_type": d.command_type,
        "status": d.status,
        "attempts": d.attempts,
        "max_attempts": d.max_attempts,
        "data": d.data,
        "correlation_id": d.correlation_id,
        "reply_to": d.reply_to,
        "batch_id": d.batch_id,
        "result": d.result,
        "last_error_type": d.error_type,
        "last_error_code": d.error_code,
        "last_error_message": d.error_message,
        "last_error_traceback": d.traceback,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    }


def audit_details(details: dict[str, Any]) -> str:
    """An audit event's details, who and why first (an operator's action), then the rest
    as ``key=value``: ``by alice; reason: fixed in 2.3.1; msg_id=41``."""
    rest = dict(details)
    operator, reason = rest.pop("operator", None), rest.pop("reason", None)
    parts = [f"by {operator}"] if operator else []
    parts += [f"reason: {reason}"] if reason else []
    parts += [f"{key}={_value(value)}" for key, value in rest.items() if value is not None]
    return "; ".join(parts) or "-"


def _value(value: object) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _describe(d: TroubleshootingDetail) -> str:
    error = [p for p in (d.error_type, d.error_code, d.error_message) if p]
    about = fields(
        [
            ("domain", d.domain),
            ("command id", d.command_id),
            ("type", d.command_type),
            ("status", d.status),
            ("attempts", f"{d.attempts}/{d.max_attempts}"),
            ("data", d.data),
            ("result", d.result),
            ("correlation id", d.correlation_id),
            ("reply to", d.reply_to),
            ("batch id", d.batch_id),
            ("last error", " | ".join(error) if error else None),
            ("created", d.created_at),
            ("updated", d.updated_at),
            ("parked", d.parked_at),
        ]
    )
    events = table(
        ["AUDIT ID", "AT", "EVENT", "DETAILS"],
        [[e.audit_id, e.created_at, e.event_type, audit_details(e.details)] for e in d.audit_trail],
        empty="(no audit events)",
        whole_last=True,
    )
    # The traceback as it was raised: every line, indented, nothing cut.
    lines = d.traceback.splitlines() if d.traceback else ["-"]
    traceback = "\n".join("  " + line for line in lines)
    return f"{about}\n\ntraceback:\n{traceback}\n\naudit trail:\n{events}"
