"""Argument plumbing shared by the command modules: the parser, value types, errors."""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = [
    "Parser",
    "Run",
    "UsageError",
    "add_operator",
    "add_paging",
    "common_options",
    "json_object",
    "positive_int",
    "uuid_arg",
]

#: What every command module stores in ``args.run``: it returns the exit code.
Run = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input on the command line; reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the caller prints them), not usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def common_options(*, suppress: bool) -> Parser:
    """``--dsn``, ``--schema`` and ``--json``, accepted before or after the command.

    The top-level parser holds the defaults; each subcommand repeats the options with
    ``SUPPRESS`` defaults so that a value given after the command is not overwritten.
    """
    parser = Parser(add_help=False)
    default: Any = argparse.SUPPRESS

    def given(value: object) -> Any:
        return default if suppress else value

    parser.add_argument(
        "--dsn",
        default=given(None),
        help="PostgreSQL connection string (default: $DATABASE_URL)",
    )
    parser.add_argument(
        "--schema", default=given("commandbus"), help="commandbus schema (default: commandbus)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=given(False),
        help="print JSON for scripts instead of tables",
    )
    return parser


def add_paging(parser: argparse.ArgumentParser, limit: int = 50) -> None:
    parser.add_argument("--limit", type=positive_int, default=limit, help=f"(default {limit})")
    parser.add_argument("--offset", type=non_negative_int, default=0)


def add_operator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator",
        default=_current_user(),
        help="name recorded in the audit trail (default: $USER)",
    )


def uuid_arg(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid UUID") from None


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise argparse.ArgumentTypeError("JSON nested too deeply to read") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def non_negative_seconds(text: str) -> float:
    """A finite, non-negative number of seconds (``nan``, ``inf`` and ``-1`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds, 0 or more, got {text!r}"
        )
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _current_user() -> str | None:
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (containers): record no operator
        return None
