"""The send statement, prepared once and executed by any connection.

The async bus and the sync outbox path (``commandbus_sync``) both run
:class:`PreparedSend`: the SQL and its rules exist only here.

Two ways to run it, both all or nothing:

* in a transaction (the caller's, or one of our own): execute the ``prelude`` statements
  (a batch row, a process row), then ``query``, then ``results(rows)``, which raises
  :class:`DuplicateCommandError` if a command was skipped as a duplicate; the
  transaction (or savepoint) must then be rolled back;
* without a prelude, alone on an autocommit connection, one round trip: execute
  ``atomic_query``; a duplicate
  fails the statement with ``UniqueViolation`` (see :meth:`PreparedSend.is_duplicate`),
  nothing is written, and ``existing_query`` then tells which ids were taken.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from psycopg.errors import UniqueViolation

from commandbus import _sql
from commandbus._channels import command_channel
from commandbus._errors import DuplicateCommandError, ValidationError
from commandbus._validation import (
    DEFAULT_MAX_DATA_BYTES,
    MAX_SEND_BYTES,
    check_data_size,
    check_delay,
    check_max_attempts,
    check_name,
    check_priority,
    check_uuid,
    dump_json_object,
    require_uuid,
)
from commandbus.hooks import Hooks, Sending
from commandbus.models import SendRequest, SendResult

__all__ = ["PreparedSend", "prepare_send"]


@dataclass(frozen=True, slots=True)
class PreparedSend:
    """A validated send: the statements to run, their ``params`` and how to read the result."""

    query: bytes
    atomic_query: bytes
    existing_query: bytes
    params: dict[str, Any]
    domain: str
    keys: tuple[tuple[str, uuid.UUID], ...]
    #: Statements that must commit with the commands, run first in the same transaction.
    prelude: tuple[tuple[bytes, dict[str, Any]], ...] = ()
    requests: tuple[SendRequest, ...] = ()

    def after(self, query: bytes, params: dict[str, Any]) -> PreparedSend:
        """This send, preceded by ``query`` in the same transaction."""
        return replace(self, prelude=(*self.prelude, (query, params)))

    @contextmanager
    def wrapped(self, hooks: Hooks) -> Iterator[PreparedSend]:
        """This send inside the hooks' middleware (a send span, say), with the headers they
        ask for stored on its commands. Every send path writes through this."""
        if not hooks.wraps:
            yield self
            return
        send = Sending(self.requests)
        with hooks.sending(send):
            if not send.headers:
                yield self
                return
            headers = json.dumps(send.headers)
            yield replace(self, params={**self.params, "trace_context": headers})

    def results(self, rows: Iterable[Sequence[Any]]) -> list[SendResult]:
        """Map returned rows to results in request order; missing ones are duplicates."""
        msg_ids: dict[tuple[str, uuid.UUID], int] = {(r[0], r[1]): r[2] for r in rows}
        missing = [key for key in self.keys if key not in msg_ids]
        if missing:
            raise _duplicates(missing)
        return [SendResult(key[1], msg_ids[key]) for key in self.keys]

    @staticmethod
    def is_duplicate(exc: UniqueViolation) -> bool:
        """Whether ``atomic_query`` failed because a command id was taken."""
        return exc.diag.table_name == "commands" and exc.diag.constraint_name == "commands_pkey"

    def duplicate_error(self, existing: Iterable[Sequence[Any]]) -> DuplicateCommandError | None:
        """The error naming the taken ids, from the rows of ``existing_query``."""
        taken = {(r[0], r[1]) for r in existing}
        return _duplicates([key for key in self.keys if key in taken]) if taken else None


def _json_str(value: object) -> str:
    return "null" if value is None else f'"{value}"'


def _duplicates(keys: Sequence[tuple[str, uuid.UUID]]) -> DuplicateCommandError:
    return DuplicateCommandError(
        keys[0][0], [command_id for _, command_id in keys], domains=[d for d, _ in keys]
    )


def _request_row(
    req: SendRequest, default_max_attempts: int, max_data_bytes: int | None
) -> tuple[tuple[str, uuid.UUID], str, bool]:
    """One request checked: its key, its element of the JSON array, whether it is due now."""
    domain = check_name("domain", req.domain)
    command_id = require_uuid("command_id", req.command_id)
    delay = check_delay(req.delay)
    priority = check_priority(req.priority)
    command_type = check_name("command_type", req.command_type)
    max_attempts = check_max_attempts(req.max_attempts, default_max_attempts)
    data = check_data_size("data", dump_json_object("data", req.data), max_data_bytes)
    correlation_id = check_uuid("correlation_id", req.correlation_id, optional=True)
    reply_to = None if req.reply_to is None else check_name("reply_to", req.reply_to)
    # Names match [A-Za-z0-9_.-]+ and uuids/numbers are plain: nothing to escape.
    row = (
        f'{{"domain":"{domain}","command_id":"{command_id}",'
        f'"command_type":"{command_type}","max_attempts":{max_attempts},"data":{data},'
        f'"correlation_id":{_json_str(correlation_id)},"reply_to":{_json_str(reply_to)},'
        f'"delay":{delay!r},"priority":{priority}}}'
    )
    return (domain, command_id), row, delay == 0


def prepare_send(
    requests: Sequence[SendRequest],
    *,
    schema: str,
    default_max_attempts: int,
    batch_id: uuid.UUID | None = None,
    max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES,
) -> PreparedSend:
    """Validate every request (nothing is written if one is bad) and build the params.
    Each command's ``data`` may take up to ``max_data_bytes`` of JSON (None: any size)."""
    if not requests:
        raise ValidationError("requests", "must contain at least one SendRequest")
    rows: list[str] = []
    keys: list[tuple[str, uuid.UUID]] = []
    seen: set[tuple[str, uuid.UUID]] = set()
    duplicates: list[tuple[str, uuid.UUID]] = []
    due_domains: set[str] = set()
    for index, req in enumerate(requests):
        if not isinstance(req, SendRequest):
            raise ValidationError(
                f"requests[{index}]", f"must be a SendRequest, got {type(req).__name__}"
            )
        try:
            key, row, due = _request_row(req, default_max_attempts, max_data_bytes)
        except ValidationError as exc:
            if len(requests) == 1:
                raise
            where = f"requests[{index}], command_id {req.command_id!r}"
            raise ValidationError(exc.field, f"{exc.message} ({where})") from None
        if key in seen:
            duplicates.append(key)
        seen.add(key)
        keys.append(key)
        rows.append(row)
        if due:
            due_domains.add(key[0])
    if duplicates:
        raise _duplicates(duplicates)
    commands = "[" + ",".join(rows) + "]"
    if len(commands) > MAX_SEND_BYTES:  # one jsonb value: PostgreSQL would refuse it
        raise ValidationError(
            "requests",
            f"hold {len(commands):,} bytes of JSON together, over the {MAX_SEND_BYTES:,} "
            "PostgreSQL accepts in one send; send them in smaller batches",
        )
    params: dict[str, Any] = {
        "commands": commands,
        "batch_id": batch_id,
        "channels": ",".join(sorted(command_channel(schema, d) for d in due_domains)),
        "trace_context": None,
    }
    return PreparedSend(
        query=_sql.query("send", schema, on_conflict="ON CONFLICT DO NOTHING"),
        atomic_query=_sql.query("send", schema, on_conflict=""),
        existing_query=_sql.query("existing_commands", schema),
        params=params,
        domain=requests[0].domain,
        keys=tuple(keys),
        requests=tuple(requests),
    )
