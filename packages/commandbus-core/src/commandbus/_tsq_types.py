"""What the troubleshooting queue's bulk and search methods take and return.

Kept apart from :mod:`commandbus.troubleshooting` so that the service reads as the list
of things an operator can do; every name here is re-exported from there and from
``commandbus``.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from commandbus._errors import ValidationError
from commandbus.models import AuditEvent, CommandStatus, TroubleshootingItem

__all__ = [
    "BulkResult",
    "ErrorGroup",
    "TroubleshootingCursor",
    "TroubleshootingDetail",
    "TroubleshootingFilter",
    "TroubleshootingPage",
]


@dataclass(frozen=True)
class TroubleshootingFilter:
    """Which parked commands a search or a bulk action is about; the criteria AND together.

    A command's *parked* time is when it entered the troubleshooting queue (its row's
    ``updated_at``, which nothing changes while it waits there). Every field left at
    None matches everything; :attr:`is_empty` says whether any criterion is set.
    """

    domain: str | None = None
    command_type: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    #: Parked at or after this time (timezone-aware).
    parked_after: datetime | None = None
    #: Parked strictly before this time (timezone-aware).
    parked_before: datetime | None = None
    #: Only these command ids (in any domain, unless ``domain`` is set too).
    command_ids: Sequence[uuid.UUID] | None = None

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True)
class BulkResult:
    """What a bulk action did, or with ``dry_run`` would do."""

    #: ``"OPERATOR_RETRY"``, ``"OPERATOR_CANCEL"`` or ``"OPERATOR_COMPLETE"``.
    action: str
    dry_run: bool
    count: int
    #: ``(domain, command_id)`` of every command acted on (or that would be), newest
    #: parked first.
    commands: list[tuple[str, uuid.UUID]]


@dataclass(frozen=True)
class ErrorGroup:
    """Parked commands that failed the same way: one row of :meth:`summary`."""

    domain: str
    command_type: str
    error_type: str | None
    error_code: str | None
    count: int
    #: Parked times of the group's oldest and newest command.
    oldest: datetime
    newest: datetime
    #: The error message of the group's most recently parked command.
    sample_message: str | None


#: Longest cursor token read back (a domain name is at most 128 characters).
_MAX_TOKEN = 512


@dataclass(frozen=True)
class TroubleshootingCursor:
    """Where a page of :meth:`find` ended: pass it as ``after=`` for the next page.

    ``token`` is an opaque string of it for URLs and forms; :meth:`from_token` reads it
    back (and refuses anything it did not make, with :class:`ValidationError`).
    """

    parked_at: datetime
    domain: str
    command_id: uuid.UUID

    @property
    def token(self) -> str:
        raw = json.dumps([self.parked_at.isoformat(), self.domain, str(self.command_id)])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def from_token(cls, token: str) -> TroubleshootingCursor:
        # A token it made is ~150 characters; anything far longer is not one (and a
        # deeply nested JSON array would exhaust the parser's recursion).
        if not isinstance(token, str) or len(token) > _MAX_TOKEN:
            raise ValidationError("after", "is not a cursor token from find()")
        try:
            padded = token + "=" * (-len(token) % 4)
            parked_at, domain, command_id = json.loads(base64.urlsafe_b64decode(padded))
            cursor = cls(datetime.fromisoformat(parked_at), domain, uuid.UUID(command_id))
        except (TypeError, ValueError, binascii.Error, AttributeError, RecursionError):
            raise ValidationError("after", "is not a cursor token from find()") from None
        if cursor.parked_at.utcoffset() is None or not isinstance(domain, str):
            raise ValidationError("after", "is not a cursor token from find()")
        return cursor


@dataclass(frozen=True)
class TroubleshootingPage:
    """One page of :meth:`find`: ``next`` is None on the last page."""

    items: list[TroubleshootingItem]
    next: TroubleshootingCursor | None


def page_of(items: list[TroubleshootingItem], limit: int) -> TroubleshootingPage:
    """The page of ``limit`` items out of the ``limit + 1`` a keyset read fetched (one
    more than shown says whether a next page exists, and where it starts)."""
    if len(items) <= limit:
        return TroubleshootingPage(items, None)
    last = items[limit - 1]
    return TroubleshootingPage(
        items[:limit], TroubleshootingCursor(last.updated_at, last.domain, last.command_id)
    )


@dataclass(frozen=True)
class TroubleshootingDetail:
    """Everything an operator needs to judge one command: the whole row and its trail.

    Available whatever the command's status, so that a command can still be looked at
    after an operator acted on it.
    """

    domain: str
    command_id: uuid.UUID
    command_type: str
    status: CommandStatus
    attempts: int
    max_attempts: int
    data: dict[str, Any]
    result: dict[str, Any] | None
    correlation_id: uuid.UUID | None
    reply_to: str | None
    batch_id: uuid.UUID | None
    error_type: str | None
    error_code: str | None
    error_message: str | None
    traceback: str | None
    created_at: datetime
    updated_at: datetime
    audit_trail: list[AuditEvent]

    @property
    def parked_at(self) -> datetime | None:
        """When it entered the troubleshooting queue; None unless it waits there now."""
        return self.updated_at if self.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE else None


@dataclass(frozen=True, slots=True)
class PickedRow:
    """One row of ``tsq_pick.sql`` (internal): a parked command a bulk action takes next."""

    domain: str
    command_id: uuid.UUID
    reply_to: str | None
    parked_at: datetime
    #: When the action started (the first chunk's statement time), for the next chunks.
    as_of: datetime


@dataclass(frozen=True, slots=True)
class ActedRow:
    """One row of ``tsq_retry_many.sql`` / ``tsq_resolve_many.sql`` (internal)."""

    domain: str
    command_id: uuid.UUID
    notified: int
