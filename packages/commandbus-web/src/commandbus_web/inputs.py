"""Reading what a request carries (query strings, form fields, path parts) into values.

Everything here raises :class:`commandbus.ValidationError` naming the field for input it
cannot read, which the pages turn into a 400: no malformed input reaches a query, and none
can cost more than its length (numbers are ASCII digits of bounded length, JSON is bounded
in size and depth).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from commandbus import ValidationError

__all__ = ["parse_count", "parse_json_object", "parse_time", "parse_uuid"]

#: ``[0-9]`` only: ``str.isdigit`` also accepts "²" and other digits ``int`` refuses.
_DIGITS = re.compile(r"[0-9]{1,10}")
#: The largest JSON result an operator may type (bytes of text).
MAX_JSON = 100_000


def parse_count(field: str, text: str | None, *, default: int, maximum: int) -> int:
    """A non-negative whole number written in ASCII digits, at most ``maximum``."""
    if text is None or not text.strip():
        return default
    text = text.strip()
    if not _DIGITS.fullmatch(text) or int(text) > maximum:
        raise ValidationError(field, f"must be a whole number from 0 to {maximum:,}")
    return int(text)


def parse_time(field: str, text: str | None) -> datetime | None:
    """A form's date-time (``datetime-local`` or ISO 8601); without a zone it is UTC."""
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value.astimezone(UTC)  # a zone pushing it past year 9999 or before year 1
    except (ValueError, OverflowError):
        raise ValidationError(field, f"{text[:40]!r} is not a date and time") from None
    return value


def parse_uuid(field: str, text: str | None) -> uuid.UUID | None:
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValidationError(field, f"{text[:40]!r} is not a UUID") from None


def parse_json_object(field: str, text: str | None) -> dict[str, Any] | None:
    """A JSON object typed by an operator, or None for nothing typed."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_JSON:
        raise ValidationError(field, f"must be at most {MAX_JSON:,} characters")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValidationError(field, "is nested too deeply") from None
    except ValueError as exc:
        raise ValidationError(field, f"is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValidationError(field, "must be a JSON object")
    return value
