"""The send statement, prepared once and executed by any connection.

The async bus and the sync outbox path (``commandbus_sync``) both run
:class:`PreparedSend`: the SQL and its rules exist only here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from commandbus import _sql
from commandbus._channels import command_channel
from commandbus._errors import DuplicateCommandError, ValidationError
from commandbus._validation import (
    check_delay,
    check_max_attempts,
    check_name,
    check_uuid,
    dump_json_object,
)
from commandbus.models import SendRequest, SendResult

__all__ = ["PreparedSend", "prepare_send"]


@dataclass(frozen=True, slots=True)
class PreparedSend:
    """A validated send: run ``query`` with ``params``, then ``results(rows)``."""

    query: bytes
    params: dict[str, Any]
    domain: str
    keys: tuple[tuple[str, uuid.UUID], ...]

    def results(self, rows: Iterable[Sequence[Any]]) -> list[SendResult]:
        """Map returned rows to results in request order; missing ones are duplicates."""
        msg_ids: dict[tuple[str, uuid.UUID], int] = {(r[0], r[1]): r[2] for r in rows}
        missing = [cid for key in self.keys if key not in msg_ids for cid in key[1:]]
        if missing:
            raise DuplicateCommandError(self.domain, missing)
        return [SendResult(key[1], msg_ids[key]) for key in self.keys]


def prepare_send(
    requests: Sequence[SendRequest],
    *,
    schema: str,
    default_max_attempts: int,
    batch_id: uuid.UUID | None = None,
) -> PreparedSend:
    """Validate every request (nothing is written if one is bad) and build the params."""
    if not requests:
        raise ValidationError("requests", "must contain at least one SendRequest")
    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "domain",
            "command_id",
            "command_type",
            "max_attempts",
            "data",
            "correlation_id",
            "reply_to",
            "delay",
        )
    }
    seen: set[tuple[str, uuid.UUID]] = set()
    duplicates: list[uuid.UUID] = []
    due_domains: set[str] = set()
    for index, req in enumerate(requests):
        if not isinstance(req, SendRequest):
            raise ValidationError(
                f"requests[{index}]", f"must be a SendRequest, got {type(req).__name__}"
            )
        domain = check_name("domain", req.domain)
        command_id = check_uuid("command_id", req.command_id)
        assert command_id is not None
        delay = check_delay(req.delay)
        key = (domain, command_id)
        if key in seen:
            duplicates.append(command_id)
        seen.add(key)
        columns["domain"].append(domain)
        columns["command_id"].append(command_id)
        columns["command_type"].append(check_name("command_type", req.command_type))
        columns["max_attempts"].append(check_max_attempts(req.max_attempts, default_max_attempts))
        columns["data"].append(dump_json_object("data", req.data))
        columns["correlation_id"].append(
            check_uuid("correlation_id", req.correlation_id, optional=True)
        )
        columns["reply_to"].append(
            None if req.reply_to is None else check_name("reply_to", req.reply_to)
        )
        columns["delay"].append(delay)
        if delay == 0:
            due_domains.add(domain)
    if duplicates:
        raise DuplicateCommandError(requests[0].domain, duplicates)
    params: dict[str, Any] = dict(columns)
    params["batch_id"] = batch_id
    params["channels"] = sorted(command_channel(schema, d) for d in due_domains)
    return PreparedSend(
        query=_sql.query("send", schema),
        params=params,
        domain=requests[0].domain,
        keys=tuple(zip(columns["domain"], columns["command_id"], strict=True)),
    )
