"""``commandbus migrate [--print-sql]``: create or upgrade the schema, or print its SQL."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus.cli._args import Parser
from commandbus.cli._connect import with_pool
from commandbus.cli._output import emit
from commandbus.migrations import migrate, migration_sql


def add_parser(commands: Any, common: Parser) -> None:
    parser = commands.add_parser(
        "migrate",
        parents=[common],
        help="create or upgrade the schema",
        description="Create or upgrade the schema (idempotent; safe from many processes).",
    )
    parser.add_argument(
        "--print-sql",
        action="store_true",
        help="print the whole schema as SQL for another migration tool; do not connect",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.print_sql:
        print(migration_sql(args.schema), end="")
        return 0
    return with_pool(_migrate)(args)


async def _migrate(pool: AsyncConnectionPool, args: argparse.Namespace) -> None:
    applied = await migrate(pool, schema=args.schema)

    def human() -> str:
        if not applied:
            return f"schema {args.schema!r} is up to date"
        return f"schema {args.schema!r}: applied migration(s) {', '.join(map(str, applied))}"

    emit(args, {"schema": args.schema, "applied": applied}, human)
