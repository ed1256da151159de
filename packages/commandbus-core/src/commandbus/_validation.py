"""Input checks done before anything is written. Each error names its field."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from commandbus._errors import ValidationError
from commandbus.models import CommandStatus

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_BIGINT",
    "MAX_CHUNK_SIZE",
    "MAX_CONCURRENCY",
    "MAX_HANDLER_TIMEOUT_S",
    "MAX_INT",
    "MAX_INTERVAL_S",
    "MAX_LEASE_S",
    "MAX_POLL_INTERVAL_S",
    "MAX_SECONDS",
    "MAX_TEXT",
    "MAX_DELAY",
    "MAX_NAME_LENGTH",
    "DEFAULT_MAX_DATA_BYTES",
    "OWN_POOL",
    "OwnPool",
    "check_age",
    "check_concurrency",
    "check_conn",
    "check_data_size",
    "check_datetime",
    "check_delay",
    "check_handler_timeout",
    "check_int",
    "check_json_object",
    "check_max_attempts",
    "check_name",
    "check_lease",
    "check_paging",
    "check_poll_interval",
    "check_positive_int",
    "check_positive_seconds",
    "check_seconds",
    "check_status",
    "check_stop_timeout",
    "check_text",
    "require_uuid",
    "check_schema",
    "short_repr",
    "check_uuid",
    "dump_json_object",
]

MAX_NAME_LENGTH = 128
MAX_ATTEMPTS = 2**31 - 1  # the integer column's range
MAX_OFFSET = 2**63 - 1  # OFFSET is a bigint
MAX_DELAY = timedelta(days=36_500)  # far enough for any schedule, well inside timestamptz
# One encoder for every call: json.dumps with options builds a new one each time.
_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
# Any escaped surrogate at all (Hangul and other text below U+D800 does not match).
_SURROGATE_HINT = re.compile(r"\\ud[89a-f]")
# U+0000 escaped by the encoder (an even number of backslashes before it is text, not escape).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# Matched with fullmatch: "$" alone would let a trailing newline through.
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_name(field: str, value: object) -> str:
    """Domains, command types and queue names: ``[A-Za-z0-9_.-]``, 1..128 characters, not
    only dots (``.`` and ``..`` would be read as paths in the console's links)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise ValidationError(field, "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationError(field, f"must be at most {MAX_NAME_LENGTH} characters")
    if not _NAME.fullmatch(value):
        raise ValidationError(field, f"{value!r} may contain only letters, digits, '_', '.', '-'")
    if not value.strip("."):
        raise ValidationError(field, f"{value!r} must not be only dots (it reads as a path)")
    return str.__str__(value)  # a plain str: a (str, Enum) member would format as "D.X"


def check_schema(value: object) -> str:
    if not isinstance(value, str) or not _SCHEMA.fullmatch(value):
        raise ValidationError(
            "schema", f"{value!r} is not a valid schema name (letters, digits, '_'; max 63)"
        )
    return value


def check_uuid(field: str, value: object, *, optional: bool = False) -> uuid.UUID | None:
    if value is None and optional:
        return None
    if not isinstance(value, uuid.UUID):
        raise ValidationError(field, f"must be a uuid.UUID, got {type(value).__name__}")
    return value


def dump_json_object(field: str, value: object) -> str:
    """Serialise a JSON object once; the text goes to PostgreSQL as jsonb."""
    check_json_object(field, value)
    try:
        text = _JSON.encode(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, f"is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise ValidationError(field, "is nested too deeply to serialise") from None
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise ValidationError(field, "contains U+0000 (NUL), which PostgreSQL's jsonb cannot store")
    if _SURROGATE_HINT.search(text) and _has_lone_surrogate(text):
        raise ValidationError(
            field, "contains a lone surrogate (e.g. from os.fsdecode), which is not Unicode text"
        )
    return text


def _has_lone_surrogate(text: str) -> bool:
    """Whether the encoded ``text`` escapes a surrogate that is not half of a pair (jsonb
    refuses those; an escaped pair is one character to it). Visits only ``\\ud`` spots."""
    at = text.find("\\ud")
    while at != -1:
        start = at
        while start and text[start - 1] == "\\":
            start -= 1
        if (at - start) % 2 == 0:  # an escape, not an escaped backslash followed by "ud"
            kind = text[at + 3]
            if kind in "89ab":  # high: the low half must follow at once
                if text.startswith("\\ud", at + 6) and text[at + 9] in "cdef":
                    at = text.find("\\ud", at + 12)
                    continue
                return True
            if kind in "cdef":  # low, with no high before it
                return True
        at = text.find("\\ud", at + 3)
    return False


def check_json_object(field: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(field, f"must be a JSON object (dict), got {type(value).__name__}")
    return value


def check_delay(value: object) -> float:
    """Seconds (int/float) or a timedelta, from 0 to :data:`MAX_DELAY`; None means now."""
    if value is None:
        return 0.0
    return check_seconds("delay", value, at_most=MAX_SECONDS, zero=True)


#: Priorities run from 0 (first, the default) to MAX_PRIORITY (last), as in Oban.
MAX_PRIORITY = 9


def check_priority(value: object) -> int:
    """A priority: an integer from 0 (runs first, the default) to :data:`MAX_PRIORITY`."""
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_PRIORITY:
        raise ValidationError(
            "priority",
            f"must be an integer from 0 (runs first) to {MAX_PRIORITY} (runs last), "
            f"got {short_repr(value)}",
        )
    return int(value)


def check_max_attempts(value: object, default: int, field: str = "max_attempts") -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ATTEMPTS:
        raise ValidationError(
            field, f"must be an integer from 1 to {MAX_ATTEMPTS}, got {short_repr(value)}"
        )
    return int(value)  # a plain int, also for an (int, Enum) member


def check_datetime(field: str, value: object) -> datetime | None:
    """None, or a timezone-aware datetime (a naive one would be read in the server's zone)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationError(field, f"must be a datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValidationError(field, "must be timezone-aware, e.g. datetime.now(timezone.utc)")
    return value


def require_uuid(field: str, value: object) -> uuid.UUID:
    checked = check_uuid(field, value)
    assert checked is not None
    return checked


def check_status(value: object) -> str:
    try:
        return CommandStatus(str(value)).value
    except ValueError:
        allowed = ", ".join(s.value for s in CommandStatus)
        raise ValidationError("status", f"{value!r} is not one of {allowed}") from None


def check_paging(limit: object, offset: object) -> dict[str, int]:
    """``limit`` 1..10000 and ``offset`` >= 0, as query parameters."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
        raise ValidationError(
            "limit", f"must be an integer between 1 and 10000, got {short_repr(limit)}"
        )
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise ValidationError(
            "offset", f"must be an integer between 0 and {MAX_OFFSET}, got {short_repr(offset)}"
        )
    return {"limit": limit, "offset": offset}


# -- ranges of the numeric settings ------------------------------------------------
# One table of them for users: docs/operations.md, "Limits of every setting". Each check
# refuses bools, NaN, infinities and integers beyond any float, and names the argument.

#: Largest integer stored in an ``integer`` column (max_attempts, max_running).
MAX_INT = 2**31 - 1
#: Largest ``bigint`` (counts, limits and offsets that reach a query).
MAX_BIGINT = 2**63 - 1
#: Handlers of one worker (``concurrency``) and threads for plain ``def`` handlers.
MAX_CONCURRENCY = 10_000
#: The longest lease (``visibility_timeout``, ``extend_visibility``): a day. Longer work
#: extends its lease as it goes, so that a crashed worker's command comes back in time.
MAX_LEASE_S = 86_400.0
#: The longest wait between polls (``poll_interval``) of workers and routers.
MAX_POLL_INTERVAL_S = 3_600.0
#: The longest run a handler may be given (``handler_timeout``, ``timeout=``): a week.
MAX_HANDLER_TIMEOUT_S = 7 * 86_400.0
#: The longest interval between rounds of a background service (pruner, scheduler),
#: of a wait in a test helper, and of a stop's grace period.
MAX_INTERVAL_S = 86_400.0
#: Any other duration: ages, delays, backoff steps, schedule intervals (100 years, far
#: inside what PostgreSQL's timestamptz and Python's datetime can add to now).
MAX_SECONDS = MAX_DELAY.total_seconds()
#: Most rows one retention statement deletes (``Retention.chunk_size``).
MAX_CHUNK_SIZE = 100_000


def short_repr(value: object) -> str:
    """``repr`` of a refused value, short (an int of 400 digits is not worth printing)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return "an integer of more than 38 digits"  # repr of 10**5000 itself raises
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_int(field: str, value: object, *, at_least: int, at_most: int) -> int:
    """An integer from ``at_least`` to ``at_most`` (a bool is not one)."""
    if not isinstance(value, int) or isinstance(value, bool) or not at_least <= value <= at_most:
        raise ValidationError(
            field, f"must be an integer from {at_least} to {at_most:,}, got {short_repr(value)}"
        )
    return int(value)  # a plain int, also for an (int, Enum) member


def check_positive_int(field: str, value: object, *, at_most: int = MAX_INT) -> int:
    return check_int(field, value, at_least=1, at_most=at_most)


def check_concurrency(field: str, value: object) -> int:
    """Handlers or threads running at once: 1 to :data:`MAX_CONCURRENCY`."""
    return check_int(field, value, at_least=1, at_most=MAX_CONCURRENCY)


def check_seconds(field: str, value: object, *, at_most: float, zero: bool = False) -> float:
    """A finite number of seconds, more than 0 (or 0 too with ``zero``), at most
    ``at_most``; a timedelta is taken too."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float, e.g. 10**400
            seconds = math.inf
    else:
        raise ValidationError(
            field, f"must be a number of seconds (or a timedelta), got {type(value).__name__}"
        )
    low_ok = seconds >= 0 if zero else seconds > 0
    if not (low_ok and seconds <= at_most):  # NaN fails both comparisons
        low = "0 or more" if zero else "more than 0"
        raise ValidationError(
            field, f"must be {low} and at most {_seconds_text(at_most)}, got {short_repr(value)}"
        )
    return seconds


def _seconds_text(seconds: float) -> str:
    """``86,400 seconds``; ``3,153,600,000 seconds (36,500 days)`` beyond a day."""
    text = f"{seconds:,.0f} seconds" if seconds == int(seconds) else f"{seconds:g} seconds"
    return text + (f" ({seconds / 86_400:,.0f} days)" if seconds > 86_400 else "")


def check_positive_seconds(field: str, value: object, *, at_most: float = MAX_SECONDS) -> float:
    return check_seconds(field, value, at_most=at_most)


def check_lease(field: str, value: object) -> float:
    """A lease: more than 0, at most :data:`MAX_LEASE_S` seconds."""
    return check_seconds(field, value, at_most=MAX_LEASE_S)


def check_poll_interval(value: object) -> float:
    return check_seconds("poll_interval", value, at_most=MAX_POLL_INTERVAL_S)


def check_handler_timeout(field: str, value: object) -> float:
    return check_seconds(field, value, at_most=MAX_HANDLER_TIMEOUT_S)


def check_stop_timeout(value: object) -> float | None:
    """``stop(timeout)``: None (wait for in-flight work) or 0 to :data:`MAX_INTERVAL_S`."""
    if value is None:
        return None
    return check_seconds("timeout", value, at_most=MAX_INTERVAL_S, zero=True)


def check_age(field: str, value: object, *, at_least: float = 0.0) -> timedelta:
    """A duration (a timedelta or seconds) more than 0 and at least ``at_least`` seconds,
    at most :data:`MAX_DELAY`; returned as a timedelta."""
    seconds = check_seconds(field, value, at_most=MAX_SECONDS)
    if seconds < at_least:
        raise ValidationError(
            field, f"must be at least {at_least:g} second(s), got {short_repr(value)}"
        )
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


#: Largest ``data`` of one command, in bytes of its JSON text, unless the bus says
#: otherwise (``CommandBus(max_data_bytes=...)``). A command is a message, not storage:
#: PostgreSQL takes at most 255 MiB of jsonb for a whole send (every command of a batch
#: travels in one jsonb array), and a worker leases up to 200 commands at once, so a
#: per-command ceiling far below that keeps both the statement and the worker's memory
#: bounded. 16 MiB is above what common brokers accept (SQS 256 KiB, Kafka 1 MB) and
#: leaves room for 15 such commands in one batch.
DEFAULT_MAX_DATA_BYTES = 16 * 1024 * 1024
#: What PostgreSQL accepts for one jsonb value (the commands of one send travel as one).
MAX_SEND_BYTES = 268_435_455


def check_data_size(field: str, text: str, limit: int | None) -> str:
    """The JSON ``text`` of a payload, if it is at most ``limit`` bytes (None: no limit).
    The text is ASCII (escaped by the encoder): characters are bytes."""
    if limit is not None and len(text) > limit:
        raise ValidationError(
            field,
            f"is {len(text):,} bytes of JSON, over this bus's limit of {limit:,} "
            "(max_data_bytes); store large content elsewhere and send a reference to it",
        )
    return text


def check_max_data_bytes(value: object) -> int | None:
    """``max_data_bytes`` of a bus: None (no limit of ours) or 1..MAX_SEND_BYTES."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SEND_BYTES:
        raise ValidationError(
            "max_data_bytes",
            f"must be None or an integer from 1 to {MAX_SEND_BYTES} (PostgreSQL's jsonb "
            f"limit), got {short_repr(value)}",
        )
    return int(value)


class OwnPool:
    """The type of :data:`OWN_POOL`, the default of ``conn=``: the bus's own pool."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "OWN_POOL"


#: ``conn``'s default: write on a connection of the bus's own pool, committed at once.
#: ``conn=None`` said explicitly is refused, since it usually means "the transaction I
#: meant to pass was not there" (see :func:`check_conn`).
OWN_POOL = OwnPool()


def check_conn(conn: object, *, sync: bool) -> Any:
    """``conn=`` of a send: None for the bus's own pool (``conn`` left out), or the
    caller's connection, checked further where it is used. Refuses ``None`` and Django's
    connection objects, which are the two easy mistakes."""
    if conn is OWN_POOL:
        return None
    if conn is None:
        raise ValidationError(
            "conn",
            "is None: leave conn out to send on the bus's own pool (committed at once), or "
            "pass the open connection whose transaction the command must join",
        )
    module = type(conn).__module__
    if module == "django" or module.startswith("django."):
        how = (
            "call connection.ensure_connection() and pass conn=connection.connection"
            if sync
            else "Django's connections are synchronous: use commandbus_sync.SyncCommandBus "
            "and pass conn=connection.connection (after connection.ensure_connection())"
        )
        raise ValidationError(
            "conn",
            f"is Django's {type(conn).__name__}, not a psycopg connection: {how} (the "
            "psycopg connection under Django's wrapper, in the same transaction)",
        )
    return conn


#: Longest free text accepted (an operator name, a reason, an error type or code).
MAX_TEXT = 4096


def check_text(field: str, value: object, *, optional: bool) -> str | None:
    """A non-blank string PostgreSQL can store (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    if "\x00" in value:
        raise ValidationError(field, "contains U+0000 (NUL), which PostgreSQL cannot store")
    if len(value) > MAX_TEXT:
        raise ValidationError(field, f"must be at most {MAX_TEXT} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            field, "contains a lone surrogate, which is not Unicode text"
        ) from None
    return str.__str__(value)
