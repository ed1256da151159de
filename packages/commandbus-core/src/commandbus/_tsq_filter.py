"""Checks of the troubleshooting queue's search and bulk inputs, done before any query.

Each check raises :class:`ValidationError` naming the argument, so bad input writes
nothing. Text that goes to the audit trail (operator, reason) must be storable: no NUL,
which PostgreSQL's text cannot hold, and no lone surrogate, which is not UTF-8.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from commandbus._errors import ValidationError
from commandbus._tsq_types import TroubleshootingCursor, TroubleshootingFilter
from commandbus._validation import (
    MAX_BIGINT,
    check_datetime,
    check_int,
    check_name,
    check_text,
    require_uuid,
)

__all__ = [
    "MAX_IDS",
    "check_limit",
    "cursor_params",
    "filter_params",
]

#: Most command ids one filter may name (one array parameter per chunk statement).
MAX_IDS = 100_000


def check_limit(value: object) -> int | None:
    """None (no bound) or a positive integer (a bigint)."""
    if value is None:
        return None
    return check_int("limit", value, at_least=1, at_most=MAX_BIGINT)


def filter_params(where: object, *, required: bool) -> dict[str, Any]:
    """Query parameters of ``where``; with ``required``, at least one criterion must be set.

    ``required`` guards the bulk actions: an empty filter would act on every parked
    command of every domain, which is never a slip one wants to make at 3 a.m.
    """
    if where is None and not required:
        where = TroubleshootingFilter()
    if not isinstance(where, TroubleshootingFilter):
        raise ValidationError(
            "where", f"must be a TroubleshootingFilter, got {type(where).__name__}"
        )
    if required and where.is_empty:
        raise ValidationError(
            "where",
            "set at least one criterion (e.g. domain=...): an empty filter would act on "
            "every command in the troubleshooting queue",
        )
    return {
        "domain": _name("domain", where.domain),
        "command_type": _name("command_type", where.command_type),
        "error_type": check_text("error_type", where.error_type, optional=True),
        "error_code": check_text("error_code", where.error_code, optional=True),
        "parked_after": check_datetime("parked_after", where.parked_after),
        "parked_before": check_datetime("parked_before", where.parked_before),
        "command_ids": _ids(where.command_ids),
    }


def cursor_params(after: object) -> dict[str, Any]:
    """Keyset parameters: the last row of the previous page, or all None for the first."""
    if after is None:
        return {"after_parked_at": None, "after_domain": None, "after_command_id": None}
    if not isinstance(after, TroubleshootingCursor):
        raise ValidationError(
            "after", f"must be a TroubleshootingCursor or None, got {type(after).__name__}"
        )
    return {
        "after_parked_at": check_datetime("after.parked_at", after.parked_at),
        "after_domain": check_name("after.domain", after.domain),
        "after_command_id": require_uuid("after.command_id", after.command_id),
    }


def _ids(value: object) -> list[uuid.UUID] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise ValidationError(
            "command_ids", f"must be a sequence of uuid.UUID, got {type(value).__name__}"
        )
    if not value:
        raise ValidationError(
            "command_ids", "must not be empty (None places no restriction on ids)"
        )
    if len(value) > MAX_IDS:
        raise ValidationError("command_ids", f"must name at most {MAX_IDS} ids")
    return [require_uuid("command_ids", item) for item in value]


def _name(field: str, value: object) -> str | None:
    return None if value is None else check_name(field, value)
