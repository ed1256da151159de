"""Row-to-model mapping shared by every reader (bus, worker, troubleshooting, CLI)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from commandbus.models import AuditEvent, CommandMetadata, CommandStatus

__all__ = ["audit_event", "command_metadata"]


def command_metadata(row: Sequence[Any]) -> CommandMetadata:
    """Map a row in the column order of ``get_command.sql``."""
    return CommandMetadata(
        domain=row[0],
        command_id=row[1],
        command_type=row[2],
        status=CommandStatus(row[3]),
        attempts=row[4],
        max_attempts=row[5],
        data=row[6],
        correlation_id=row[7],
        reply_to=row[8],
        batch_id=row[9],
        result=row[10],
        last_error_type=row[11],
        last_error_code=row[12],
        last_error_message=row[13],
        created_at=row[14],
        updated_at=row[15],
    )


def audit_event(row: Sequence[Any]) -> AuditEvent:
    return AuditEvent(
        audit_id=row[0],
        domain=row[1],
        command_id=row[2],
        event_type=row[3],
        details=row[4],
        created_at=row[5],
    )
