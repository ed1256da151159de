"""State-changing requests: POST only, CSRF-checked, by an authenticated operator only.

A troubleshooting action takes two steps. ``/tsq/confirm`` runs the action as a dry run
and shows how many commands it would touch; ``/tsq/apply`` acts, with the operator's
identity and reason in each command's audit event. The confirmation freezes the set:
"select all matching" is applied with ``parked_before`` set to the time of the dry run
and a limit of the count shown, so commands parked meanwhile are not swept along.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from commandbus import ValidationError
from commandbus.troubleshooting import BulkResult, TroubleshootingFilter
from commandbus_web.app import Console
from commandbus_web.inputs import parse_count, parse_json_object
from commandbus_web.pages import FILTER_FIELDS, tsq_filter

__all__ = ["apply", "confirm", "parked_reply"]

log = logging.getLogger("commandbus.web")

ACTIONS = {"retry": "Retry", "cancel": "Cancel", "complete": "Complete"}
#: Commands listed on the confirmation page (the count is always exact).
SHOWN = 20
#: The largest confirmed count a form may carry.
MAX_LIMIT = 100_000_000


def _one(form: dict[str, list[str]], name: str) -> str | None:
    value = (form.get(name) or [""])[0].strip()
    return value or None


def _action(form: dict[str, list[str]]) -> str:
    action = _one(form, "action")
    if action not in ACTIONS:
        raise ValidationError("action", f"must be one of {', '.join(ACTIONS)}, got {action!r}")
    return action


def _ids(form: dict[str, list[str]]) -> list[uuid.UUID]:
    ids = []
    for text in form.get("id", []):
        try:
            ids.append(uuid.UUID(text))
        except ValueError:
            raise ValidationError("id", f"{text!r} is not a command id") from None
    return ids


def _selection(form: dict[str, list[str]]) -> tuple[TroubleshootingFilter, bool]:
    """The filter the form selects: every match (``all``) or the ticked ids."""
    values = {name: _one(form, name) for name in FILTER_FIELDS}
    where = tsq_filter(values)
    if _one(form, "all"):
        return where, True
    ids = _ids(form)
    if not ids:
        raise ValidationError("id", "select at least one command (or all matching the filter)")
    return TroubleshootingFilter(command_ids=ids), False


async def _run(
    c: Console,
    action: str,
    where: TroubleshootingFilter,
    *,
    operator: str,
    reason: str | None,
    result: dict[str, Any] | None,
    limit: int | None,
    dry_run: bool,
) -> BulkResult:
    tsq = await c.tsq()
    if action == "retry":
        return await tsq.retry_many(
            where, operator=operator, reason=reason, limit=limit, dry_run=dry_run
        )
    if action == "cancel":
        return await tsq.cancel_many(
            where,
            operator=operator,
            reason=reason or "(dry run)",
            limit=limit,
            dry_run=dry_run,
        )
    return await tsq.complete_many(
        where, operator=operator, result=result, reason=reason, limit=limit, dry_run=dry_run
    )


async def confirm(c: Console, request: Request) -> Response:
    operator = await c.require_operator(request)
    form = await c.checked_form(request)
    action = _action(form)
    where, everything = _selection(form)
    as_of = datetime.now(UTC)
    if everything and (where.parked_before is None or where.parked_before > as_of):
        where = TroubleshootingFilter(**{**_fields(where), "parked_before": as_of})
    preview = await _run(
        c, action, where, operator=operator, reason=None, result=None, limit=None, dry_run=True
    )
    hidden: list[tuple[str, str]] = [("action", action)]
    for name, value in _fields(where).items():
        if name == "command_ids":
            hidden += [("id", str(i)) for i in value or []]
        elif value is not None:
            form_name = _FORM_NAMES[name]
            hidden.append((form_name, value.isoformat() if isinstance(value, datetime) else value))
    hidden.append(("limit", str(preview.count)))
    return await c.render(
        request,
        "confirm.html",
        {
            "action": action,
            "label": ACTIONS[action],
            "preview": preview,
            "shown": preview.commands[:SHOWN],
            "hidden": hidden,
            "back": {k: v for k, v in ((n, _one(form, n)) for n in FILTER_FIELDS) if v},
        },
    )


_FORM_NAMES = {
    "domain": "domain",
    "command_type": "type",
    "error_type": "error_type",
    "error_code": "error_code",
    "parked_after": "since",
    "parked_before": "until",
}


def _fields(where: TroubleshootingFilter) -> dict[str, Any]:
    return {
        "domain": where.domain,
        "command_type": where.command_type,
        "error_type": where.error_type,
        "error_code": where.error_code,
        "parked_after": where.parked_after,
        "parked_before": where.parked_before,
        "command_ids": where.command_ids,
    }


async def apply(c: Console, request: Request) -> Response:
    operator = await c.require_operator(request)
    form = await c.checked_form(request)
    action = _action(form)
    ids = _ids(form)
    if ids:
        where = TroubleshootingFilter(command_ids=ids)
    else:
        where = tsq_filter({name: _one(form, name) for name in FILTER_FIELDS})
        if where.parked_before is None:
            raise ValidationError("until", "a confirmed selection carries its time")
    if _one(form, "limit") is None:
        raise ValidationError("limit", "the confirmed count is missing")
    limit = parse_count("limit", _one(form, "limit"), default=0, maximum=MAX_LIMIT)
    reason = _one(form, "reason")
    if action == "cancel" and reason is None:
        raise ValidationError("reason", "a cancel needs a reason")
    result = parse_json_object("result", _one(form, "result")) if action == "complete" else None
    if limit == 0:
        done = BulkResult(f"OPERATOR_{action.upper()}", False, 0, [])
    else:
        done = await _run(
            c,
            action,
            where,
            operator=operator,
            reason=reason,
            result=result,
            limit=limit,
            dry_run=False,
        )
    log.info("console: %s by %s on %d commands", done.action, operator, done.count)
    return await c.render(
        request,
        "applied.html",
        {
            "label": ACTIONS[action],
            "done": done,
            "shown": done.commands[:SHOWN],
            "reason": reason,
        },
    )


async def parked_reply(c: Console, request: Request) -> Response:
    operator = await c.require_operator(request)
    await c.checked_form(request)
    parked_id = request.path_params["parked_id"]
    verb = request.path_params["verb"]
    repo = await c.processes()
    if verb == "retry":
        await repo.retry_parked_reply(parked_id)
    elif verb == "discard":
        await repo.discard_parked_reply(parked_id)
    else:
        raise ValidationError("action", f"{verb!r} is not retry or discard")
    log.info("console: parked reply %s %s by %s", parked_id, verb, operator)
    return RedirectResponse(request.url_for("replies").path + f"?done={verb}", status_code=303)


async def cancel_command(c: Console, request: Request) -> Response:
    """Cancel a pending command, or ask a running one's worker to (CommandBus.cancel)."""
    operator = await c.require_operator(request)
    form = await c.checked_form(request)
    domain = request.path_params["domain"]
    try:
        command_id = uuid.UUID(request.path_params["command_id"])
    except ValueError:
        raise ValidationError("command_id", "is not a UUID") from None
    reason = _one(form, "reason")
    status = await (await c.bus()).cancel(
        domain, command_id, reason=reason or "", operator=operator
    )
    log.info("console: command %s in %r canceled by %s (%s)", command_id, domain, operator, status)
    target = request.url_for("command", domain=domain, command_id=str(command_id)).path
    return RedirectResponse(f"{target}?cancel={status.value}", status_code=303)
