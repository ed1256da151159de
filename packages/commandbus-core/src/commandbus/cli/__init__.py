"""``commandbus``: the operator's command line.

    commandbus [--dsn DSN] [--schema SCHEMA] [--json] COMMAND ...

One module per command group adds its subcommands and stores a ``run`` function in
``args.run``. Expected failures print one line, ``commandbus: error: ...``, on stderr and
exit with 2 for bad input, 1 for an unreachable database or another database error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

import psycopg
from psycopg import errors

from commandbus._errors import (
    BatchNotFoundError,
    CommandNotFoundError,
    ConfigurationError,
    InvalidOperationError,
    ProcessNotFoundError,
    ValidationError,
)
from commandbus.cli import (
    batches,
    commands,
    domains,
    health,
    migrate,
    monitoring,
    processes,
    replies,
    retention,
    schedules,
    stats,
    tsq,
    web,
    worker,
    workers,
)
from commandbus.cli._args import Parser, UsageError, common_options

__all__ = ["build_parser", "main"]

#: Errors that mean "the input is wrong": exit status 2.
_BAD_INPUT = (
    UsageError,
    ValidationError,
    CommandNotFoundError,
    BatchNotFoundError,
    ProcessNotFoundError,
    InvalidOperationError,
    ConfigurationError,
)


def build_parser() -> Parser:
    parser = Parser(
        prog="commandbus",
        parents=[common_options(suppress=False)],
        description="Operate a commandbus: migrate, run workers, inspect commands, batches "
        "and processes, act on the troubleshooting queue.",
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options(suppress=True)
    for module in (
        *(migrate, worker, commands, tsq, batches, processes, replies, stats, workers, health),
        *(retention, schedules, domains),
        web,
        monitoring,
    ):
        module.add_parser(subcommands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    if sys.platform == "win32":  # psycopg's async connections need a selector loop
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # for worker --processes
        if args.command != "worker":
            logging.basicConfig(level=logging.ERROR)  # no pool warnings next to our one line
        status: int = args.run(args)
        sys.stdout.flush()
        return status
    except _BAD_INPUT as exc:
        return _fail(str(exc), 2)
    except (errors.UndefinedTable, errors.InvalidSchemaName) as exc:
        return _fail(f"{_primary(exc)}: is the schema migrated? (commandbus migrate)", 1)
    except psycopg.OperationalError as exc:
        return _fail(f"cannot use the database: {_primary(exc)}", 1)
    except psycopg.Error as exc:
        return _fail(f"database error: {_primary(exc)}", 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `commandbus ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _fail(message: str, status: int) -> int:
    print(f"commandbus: error: {_one_line(message)}", file=sys.stderr)
    return status


def _primary(error: psycopg.Error) -> str:
    """The server's message without its LINE/caret context; libpq's text otherwise."""
    return error.diag.message_primary or str(error)


def _one_line(error: object) -> str:
    return " ".join(str(error).split())
