"""``commandbus processes list|show``: process managers (sagas) and their audit trails."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus._errors import ProcessNotFoundError
from commandbus.cli._args import Parser, add_paging, uuid_arg
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, fields, table
from commandbus.process import ProcessAuditEntry, ProcessInfo, ProcessRepository, ProcessStatus


def add_parser(commands: Any, common: Parser) -> None:
    group = commands.add_parser("processes", help="list and inspect processes (sagas)")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="a domain's processes")
    listing.add_argument("--domain", required=True)
    listing.add_argument("--type", dest="process_type", metavar="TYPE")
    listing.add_argument("--status", choices=[s.value for s in ProcessStatus])
    add_paging(listing)
    listing.set_defaults(run=with_pool(_list))

    show = actions.add_parser("show", parents=[common], help="one process and its audit trail")
    show.add_argument("process_id", metavar="ID", type=uuid_arg)
    show.set_defaults(run=with_pool(_show))


async def _list(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    found = await ProcessRepository(pool, schema=args.schema).list(
        args.domain,
        process_type=args.process_type,
        status=args.status,
        limit=args.limit,
        offset=args.offset,
    )
    headers = ["PROCESS ID", "TYPE", "STATUS", "STEP", "COMMAND STATUS", "CREATED", "UPDATED"]
    rows = [
        [
            p.process_id,
            p.process_type,
            p.status,
            p.current_step,
            p.current_command_status,
            p.created_at,
            p.updated_at,
        ]
        for p in found
    ]
    emit(args, found, lambda: table(headers, rows, empty="no processes found"))


async def _show(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    repo = ProcessRepository(pool, schema=args.schema)
    process = await repo.get(args.process_id)
    if process is None:
        raise ProcessNotFoundError(args.process_id)
    trail = await repo.get_audit_trail(args.process_id)
    emit(args, {"process": process, "audit_trail": trail}, lambda: _describe(process, trail))


def _describe(p: ProcessInfo, trail: list[ProcessAuditEntry]) -> str:
    about = fields(
        [
            ("process id", p.process_id),
            ("domain", p.domain),
            ("type", p.process_type),
            ("status", p.status),
            ("current step", p.current_step),
            ("current command", _command(p)),
            ("completed steps", ", ".join(p.completed_steps) or None),
            ("compensation steps", ", ".join(p.compensation_steps) or None),
            ("state", p.state),
            ("error", ": ".join(e for e in (p.error_code, p.error_message) if e) or None),
            ("created", p.created_at),
            ("updated", p.updated_at),
            ("completed", p.completed_at),
        ]
    )
    entries = table(
        ["SEQ", "ENTRY", "STEP", "COMMAND TYPE", "SENT", "REPLY", "RECEIVED", "NOTE"],
        [
            [
                e.seq,
                e.entry_type,
                e.step,
                e.command_type,
                e.sent_at,
                e.reply_outcome,
                e.received_at,
                e.note or e.error_code,
            ]
            for e in trail
        ],
        empty="(no audit entries)",
    )
    return f"{about}\n\naudit trail:\n{entries}"


def _command(p: ProcessInfo) -> str | None:
    if p.current_command_id is None:
        return None
    return f"{p.current_command_domain}/{p.current_command_id} ({p.current_command_status})"
