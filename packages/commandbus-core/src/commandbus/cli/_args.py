"""Argument plumbing shared by the command modules: the parser, value types, errors."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import uuid
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from commandbus._errors import ValidationError
from commandbus._validation import (
    MAX_BIGINT,
    MAX_INT,
    MAX_SECONDS,
    check_concurrency,
    check_int,
    check_seconds,
    check_text,
)

__all__ = [
    "Parser",
    "Run",
    "UsageError",
    "add_operator",
    "add_paging",
    "add_reason",
    "checked",
    "common_options",
    "concurrency_arg",
    "int_range",
    "json_object",
    "non_negative_int",
    "non_negative_seconds",
    "page_size",
    "port",
    "positive_int",
    "seconds",
    "seconds_range",
    "text_arg",
    "uuid_arg",
]

T = TypeVar("T")
U = TypeVar("U")

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
    parser.add_argument("--limit", type=page_size, default=limit, help=f"(default {limit})")
    parser.add_argument("--offset", type=non_negative_int, default=0)


def add_operator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator",
        type=text_arg("operator"),
        default=_current_user(),  # a string default goes through `type` too
        help="name recorded in the audit trail (default: $USER)",
    )


def add_reason(parser: argparse.ArgumentParser, *, required: bool, help: str) -> None:
    parser.add_argument("--reason", type=text_arg("reason"), required=required, help=help)


def text_arg(field: str) -> Callable[[str], str]:
    """Free text for the audit trail, checked as the core checks it (one check for all:
    not blank, no NUL, no undecodable bytes, at most 4096 characters)."""
    return checked(str, lambda value: str(check_text(field, value, optional=False)))


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


def checked(parse: Callable[[str], T], check: Callable[[T], U]) -> Callable[[str], U]:
    """An argparse type: ``parse`` the text, then apply the core's ``check`` to it, so that
    a flag has the range (and the words) of the argument it sets (docs/operations.md,
    "Limits of every setting"); argparse names the flag in the one-line error."""

    def convert(text: str) -> U:
        try:
            return check(parse(text))
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def seconds(text: str) -> float:
    """A number of seconds as written (its range is checked afterwards)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def int_range(at_least: int, at_most: int) -> Callable[[str], int]:
    return checked(integer, lambda v: check_int("value", v, at_least=at_least, at_most=at_most))


def seconds_range(at_most: float, *, zero: bool) -> Callable[[str], float]:
    return checked(seconds, lambda v: check_seconds("value", v, at_most=at_most, zero=zero))


#: 1 to 2**31 - 1 (an integer column's range): counts, limits, attempts.
positive_int = int_range(1, MAX_INT)
#: 0 to 2**63 - 1 (a bigint): offsets, thresholds.
non_negative_int = int_range(0, MAX_BIGINT)
#: Finite seconds, 0 or more, at most 100 years (``nan``, ``inf`` and ``-1`` are refused).
non_negative_seconds = seconds_range(MAX_SECONDS, zero=True)
#: Rows of one page: what the reads take (``check_paging``).
page_size = int_range(1, 10_000)
#: A TCP port to listen on.
port = int_range(1, 65_535)
#: Handlers (or threads) at once: the range of ``Worker(concurrency=...)``.
concurrency_arg = checked(integer, lambda value: check_concurrency("concurrency", value))


def _current_user() -> str | None:
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (containers): record no operator
        return None
