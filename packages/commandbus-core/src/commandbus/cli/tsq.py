"""``commandbus tsq list|summary|show|retry|cancel|complete``: the troubleshooting queue.

One command or many: ``tsq retry DOMAIN ID`` acts on one command; ``tsq retry --all``
with filters (``--domain``, ``--type``, ``--error-code``, ...) acts on every parked
command they match, and ``--dry-run`` lists those without touching them. Every action is
recorded in each command's audit trail with ``--operator`` (default $USER) and
``--reason``.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus._validation import MAX_BIGINT
from commandbus.cli._args import (
    Parser,
    UsageError,
    add_operator,
    add_reason,
    int_range,
    json_object,
    non_negative_int,
    page_size,
    text_arg,
    uuid_arg,
)
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit, table
from commandbus.cli.commands import show_command
from commandbus.cli.retention import duration
from commandbus.models import TroubleshootingItem
from commandbus.troubleshooting import (
    BulkResult,
    TroubleshootingCursor,
    TroubleshootingFilter,
    TroubleshootingQueue,
)

__all__ = ["add_parser", "point_in_time"]

#: Looks like an age (digits and units), whatever its value.
_DURATION_LIKE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw]?\s*)+")

#: The filter options and the TroubleshootingFilter fields they fill.
_FILTERS = {
    "domain": "domain",
    "command_type": "command_type",
    "error_type": "error_type",
    "error_code": "error_code",
    "since": "parked_after",
    "until": "parked_before",
    "ids": "command_ids",
}

_ACTIONS = {
    "retry": ("deliver the command again with a fresh attempt budget", "retried"),
    "cancel": ("end the command as CANCELED (its reply_to gets CANCELED)", "canceled"),
    "complete": ("end the command as COMPLETED (its reply_to gets SUCCESS)", "completed"),
}


def point_in_time(text: str) -> datetime:
    """An ISO 8601 time (UTC unless it names a zone), or an age such as ``2h`` (ago)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            age = duration(text)
        except argparse.ArgumentTypeError as exc:
            if _DURATION_LIKE.fullmatch(text.strip()):
                raise  # an age out of range: say so
            raise argparse.ArgumentTypeError(
                f"{text!r} is neither an ISO time (2026-01-31T08:00Z) nor an age (2h, 1d)"
            ) from exc
        return datetime.now(UTC) - age
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def add_parser(commands: Any, common: Parser) -> None:
    group = commands.add_parser(
        "tsq", help="the troubleshooting queue: list, summary, show, retry, cancel..."
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", parents=[common], help="commands waiting for an operator, newest parked first"
    )
    _add_filters(listing)
    listing.add_argument("--limit", type=page_size, default=50, help="(default 50)")
    listing.add_argument("--offset", type=non_negative_int, default=0)
    listing.add_argument("--after", metavar="TOKEN", help="the page after this one's last row")
    listing.set_defaults(run=with_pool(_list))

    summary = actions.add_parser(
        "summary", parents=[common], help="parked commands grouped by domain, type and error"
    )
    _add_filters(summary)
    summary.set_defaults(run=with_pool(_summary))

    show = actions.add_parser(
        "show", parents=[common], help="one command: data, result, error, traceback, audit"
    )
    show.add_argument("domain", metavar="DOMAIN")
    show.add_argument("command_id", metavar="ID", type=uuid_arg)
    show.set_defaults(run=with_pool(show_command))

    for action, (text, _) in _ACTIONS.items():
        parser = actions.add_parser(
            action,
            parents=[common],
            help=text,
            description=f"{text}. One command: DOMAIN ID. Many: --all and filters "
            "(at least one), e.g. --all --domain payments --error-code TIMEOUT --dry-run.",
        )
        # Not "domain": that is --domain's, the filter of --all.
        parser.add_argument("target_domain", metavar="DOMAIN", nargs="?")
        parser.add_argument("target_id", metavar="ID", type=uuid_arg, nargs="?")
        parser.add_argument(
            "--all",
            dest="bulk",
            action="store_true",
            help="act on every parked command the filters match, instead of DOMAIN ID",
        )
        _add_filters(parser)
        parser.add_argument(
            "--limit", type=int_range(1, MAX_BIGINT), help="with --all: at most N commands"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="with --all: list what would be acted on"
        )
        add_operator(parser)
        add_reason(parser, required=action == "cancel", help="why (recorded in the audit trail)")
        if action == "complete":
            parser.add_argument(
                "--result", type=json_object, metavar="JSON", help="the command's result object"
            )
        parser.set_defaults(run=with_pool(_act))


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain")
    parser.add_argument("--type", dest="command_type", metavar="TYPE")
    parser.add_argument(
        "--error-type", type=text_arg("error_type"), metavar="NAME", help="e.g. TimeoutError"
    )
    parser.add_argument(
        "--error-code", type=text_arg("error_code"), metavar="CODE", help="e.g. NO_HANDLER"
    )
    parser.add_argument(
        "--since",
        type=point_in_time,
        metavar="TIME",
        help="parked at or after: ISO time (UTC unless zoned) or an age like 2h",
    )
    parser.add_argument(
        "--until", type=point_in_time, metavar="TIME", help="parked before (as --since)"
    )
    parser.add_argument(
        "--id", dest="ids", type=uuid_arg, action="append", metavar="ID", help="(repeatable)"
    )


def _where(args: argparse.Namespace) -> TroubleshootingFilter:
    return TroubleshootingFilter(**{field: getattr(args, opt) for opt, field in _FILTERS.items()})


async def _list(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    if args.after is not None and args.offset:
        raise UsageError("--after and --offset cannot be combined")
    after = None if args.after is None else TroubleshootingCursor.from_token(args.after)
    if args.offset + args.limit > 10_000:
        raise UsageError("--offset plus --limit must be at most 10000 (use --after to page)")
    page = await TroubleshootingQueue(pool, schema=args.schema).find(
        _where(args), limit=args.offset + args.limit, after=after
    )
    items = page.items[args.offset :]

    def human() -> str:
        text = _items_table(items)
        return text if page.next is None else f"{text}\n(more: --after {page.next.token})"

    emit(args, items, human)


def _items_table(items: list[TroubleshootingItem]) -> str:
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
    return table(headers, rows, empty="no parked commands match")


async def _summary(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    groups = await TroubleshootingQueue(pool, schema=args.schema).summary(_where(args))
    headers = ["DOMAIN", "TYPE", "ERROR TYPE", "CODE", "COUNT", "OLDEST", "NEWEST", "SAMPLE"]
    rows = [
        [
            g.domain,
            g.command_type,
            g.error_type,
            g.error_code,
            g.count,
            g.oldest,
            g.newest,
            g.sample_message,
        ]
        for g in groups
    ]
    emit(args, groups, lambda: table(headers, rows, empty="no parked commands match"))


async def _act(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    tsq = TroubleshootingQueue(pool, schema=args.schema)
    if args.bulk:
        await _act_on_many(tsq, args)
    else:
        await _act_on_one(tsq, args)


async def _act_on_one(tsq: TroubleshootingQueue, args: argparse.Namespace) -> None:
    if args.target_domain is None or args.target_id is None:
        raise UsageError(f"tsq {args.action} needs DOMAIN ID, or --all with filters")
    bulk_only = [opt for opt in (*_FILTERS, "limit", "dry_run") if getattr(args, opt)]
    if bulk_only:
        names = ", ".join("--" + opt.replace("_", "-") for opt in bulk_only)
        raise UsageError(f"{names} only apply with --all (not with DOMAIN ID)")
    target = (args.target_domain, args.target_id)
    who = {"operator": args.operator, "reason": args.reason}
    if args.action == "retry":
        await tsq.operator_retry(*target, **who)
    elif args.action == "cancel":
        await tsq.operator_cancel(*target, **who)
    else:
        await tsq.operator_complete(*target, result=args.result, **who)
    report = {"action": args.action, "domain": target[0], "command_id": target[1], **who}
    done = _ACTIONS[args.action][1]
    by = f" by {args.operator}" if args.operator else ""
    emit(args, report, lambda: f"{done} command {target[1]} in domain {target[0]!r}{by}")


async def _act_on_many(tsq: TroubleshootingQueue, args: argparse.Namespace) -> None:
    if args.target_domain is not None:
        raise UsageError(
            "--all acts on what the filters match: give no DOMAIN ID (a domain is --domain D)"
        )
    where = _where(args)
    options: dict[str, Any] = {
        "operator": args.operator,
        "reason": args.reason,
        "limit": args.limit,
        "dry_run": args.dry_run,
    }
    result: BulkResult
    if args.action == "retry":
        result = await tsq.retry_many(where, **options)
    elif args.action == "cancel":
        result = await tsq.cancel_many(where, **options)
    else:
        result = await tsq.complete_many(where, result=args.result, **options)
    emit(args, result, lambda: _describe_bulk(args, result))


def _describe_bulk(args: argparse.Namespace, result: BulkResult) -> str:
    done = _ACTIONS[args.action][1]
    if not result.dry_run:
        by = f" by {args.operator}" if args.operator else ""
        return f"{done} {result.count} commands{by}"
    listed = table(["DOMAIN", "COMMAND ID"], result.commands, empty="(no parked commands match)")
    return f"dry run: would have {done} {result.count} commands\n{listed}"
