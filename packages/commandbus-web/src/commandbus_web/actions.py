"""State-changing requests: POST only, CSRF-checked, by a signed-in user allowed to act.

A troubleshooting action takes two steps. ``/tsq/confirm`` counts the commands the
action would touch (the same filter) and lists the first of them; ``/tsq/apply`` acts,
with the operator's identity and reason in each command's audit event. The confirmation
freezes the set: "select all matching" is applied with ``parked_before`` set to the time
of the confirmation and a limit of the count shown, so commands parked meanwhile are not
swept along. The count stops at :data:`PREVIEW_CAP` (bounded work per request): above
that the confirmation says "more than", and the action takes every match parked before
the confirmation.

Pausing or resuming a domain and cancelling a command take a reason; every action is
logged (logger ``commandbus.web``) with the operator, and recorded by the core: the
audit trail of each command, the paused domain's operator and reason.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from commandbus import ValidationError, console, list_paused
from commandbus import pause_domain as core_pause
from commandbus import resume_domain as core_resume
from commandbus._validation import check_name
from commandbus.troubleshooting import BulkResult, TroubleshootingFilter
from commandbus_web.access import Action, User
from commandbus_web.console import Console
from commandbus_web.inputs import parse_count, parse_json_object
from commandbus_web.pages import FILTER_FIELDS, tsq_filter

__all__ = [
    "apply",
    "cancel_command",
    "confirm",
    "parked_reply",
    "pause_domain",
    "pause_form",
    "resume_domain",
]

log = logging.getLogger("commandbus.web")

ACTIONS = {"retry": "Retry", "cancel": "Cancel", "complete": "Complete"}
REPLY_ACTIONS = {"retry": "Retry", "discard": "Discard"}
#: Commands listed on the confirmation page.
SHOWN = 20
#: The dry run of a confirmation counts at most this many commands.
PREVIEW_CAP = 5_000
#: The largest confirmed count a form may carry.
MAX_LIMIT = 100_000_000
#: The confirmed count of a selection larger than the dry run counted.
EVERY = "all"


async def _acting(c: Console, request: Request) -> tuple[User, dict[str, list[str]]]:
    """The signed-in user and their CSRF-checked form."""
    user = await c.signed_in(request)
    return user, await c.checked_form(request, user)


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
) -> BulkResult:
    tsq = await c.tsq()
    if action == "retry":
        return await tsq.retry_many(where, operator=operator, reason=reason, limit=limit)
    if action == "cancel":
        assert reason is not None  # checked by apply
        return await tsq.cancel_many(where, operator=operator, reason=reason, limit=limit)
    return await tsq.complete_many(
        where, operator=operator, result=result, reason=reason, limit=limit
    )


async def confirm(c: Console, request: Request) -> Response:
    user, form = await _acting(c, request)
    action = _action(form)
    await c.require(user, Action(action))
    where, everything = _selection(form)
    if everything and where.is_empty:
        # As `commandbus tsq` does: "everything parked in every domain" is never a slip.
        raise ValidationError(
            "all",
            "filter the queue first (a domain, type, error or time): all matching "
            "no filter would take every parked command of every domain",
        )
    as_of = datetime.now(UTC)
    if everything and (where.parked_before is None or where.parked_before > as_of):
        where = TroubleshootingFilter(**{**_fields(where), "parked_before": as_of})
    pool = await c.pool()

    async def preview() -> tuple[int, list[tuple[str, uuid.UUID]]]:
        count = await console.count_parked(pool, where, schema=c.schema, cap=PREVIEW_CAP)
        first = await console.parked_page(pool, where, schema=c.schema, limit=SHOWN)
        return count, [(item.domain, item.command_id) for item in first.items]

    found, shown = await c.load.heavy(preview)
    more = found > PREVIEW_CAP
    hidden: list[tuple[str, str]] = [("action", action)]
    for name, value in _fields(where).items():
        if name == "command_ids":
            hidden += [("id", str(i)) for i in value or []]
        elif value is not None:
            form_name = _FORM_NAMES[name]
            hidden.append((form_name, value.isoformat() if isinstance(value, datetime) else value))
    hidden.append(("limit", EVERY if more else str(found)))
    return await c.render(
        request,
        "confirm.html",
        {
            "action": action,
            "label": ACTIONS[action],
            "count": min(found, PREVIEW_CAP),
            "more": more,
            "as_of": where.parked_before if everything else None,
            "shown": shown,
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
    user, form = await _acting(c, request)
    action = _action(form)
    await c.require(user, Action(action))
    ids = _ids(form)
    if ids:
        where = TroubleshootingFilter(command_ids=ids)
    else:
        where = tsq_filter({name: _one(form, name) for name in FILTER_FIELDS})
        if where.parked_before is None:
            raise ValidationError("until", "a confirmed selection carries its time")
    confirmed = _one(form, "limit")
    if confirmed is None:
        raise ValidationError("limit", "the confirmed count is missing")
    limit = (
        None
        if confirmed == EVERY
        else parse_count("limit", confirmed, default=0, maximum=MAX_LIMIT)
    )
    reason = _one(form, "reason")
    if action == "cancel" and reason is None:
        raise ValidationError("reason", "a cancel needs a reason")
    result = parse_json_object("result", _one(form, "result")) if action == "complete" else None
    if limit == 0:
        done = BulkResult(f"OPERATOR_{action.upper()}", False, 0, [])
    else:
        try:
            done = await _run(
                c,
                action,
                where,
                operator=user.name,
                reason=reason,
                result=result,
                limit=limit,
            )
        finally:
            c.load.forget()
    log.info(
        "console: %s by %s on %d commands%s",
        done.action,
        user.name,
        done.count,
        f" ({reason})" if reason else "",
    )
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
    """Two steps, as for the troubleshooting queue: the list's button shows a confirmation
    page asking for a reason; that page's form acts, under the signed-in user's name."""
    user, form = await _acting(c, request)
    parked_id = request.path_params["parked_id"]
    verb = request.path_params["verb"]
    if verb not in REPLY_ACTIONS:
        raise ValidationError("action", f"{verb[:40]!r} is not retry or discard")
    await c.require(user, Action.RETRY_REPLY if verb == "retry" else Action.DISCARD_REPLY)
    if _one(form, "confirmed") != "yes":
        context = {"parked_id": parked_id, "verb": verb, "label": REPLY_ACTIONS[verb]}
        return await c.render(request, "reply_confirm.html", context)
    reason = _one(form, "reason")
    if reason is None:
        raise ValidationError("reason", "say why (it goes to the audit trail)")
    repo = await c.processes()
    if verb == "retry":
        await repo.retry_parked_reply(parked_id, operator=user.name, reason=reason)
    else:
        await repo.discard_parked_reply(parked_id, operator=user.name, reason=reason)
    c.load.forget()
    log.info("console: parked reply %s %s by %s (%s)", parked_id, verb, user.name, reason)
    return RedirectResponse(request.url_for("replies").path + f"?done={verb}", status_code=303)


async def cancel_command(c: Console, request: Request) -> Response:
    """Cancel a pending command, or ask a running one's worker to (CommandBus.cancel):
    recorded as OPERATOR_CANCEL with the operator and the reason."""
    user, form = await _acting(c, request)
    await c.require(user, Action.CANCEL_COMMAND)
    domain = check_name("domain", request.path_params["domain"])
    try:
        command_id = uuid.UUID(request.path_params["command_id"])
    except ValueError:
        raise ValidationError("command_id", "is not a UUID") from None
    reason = _one(form, "reason")
    if reason is None:
        raise ValidationError("reason", "a cancel needs a reason (it goes to the audit trail)")
    status = await (await c.bus()).cancel(domain, command_id, reason=reason, operator=user.name)
    c.load.forget()
    log.info(
        "console: command %s in %r canceled by %s (%s): %s",
        command_id,
        domain,
        user.name,
        status,
        reason,
    )
    target = request.url_for("command", domain=domain, command_id=str(command_id)).path
    return RedirectResponse(f"{target}?cancel={status.value}", status_code=303)


async def pause_form(c: Console, request: Request) -> Response:
    """The page asking for the reason of a pause or resume (GET: changes nothing)."""
    user = await c.signed_in(request)
    domain = check_name("domain", request.path_params["domain"])
    verb = request.path_params["verb"]
    if verb not in ("pause", "resume"):
        raise ValidationError("action", f"{verb[:40]!r} is not pause or resume")
    await c.require(user, Action.PAUSE_DOMAIN if verb == "pause" else Action.RESUME_DOMAIN)
    paused = {p.domain: p for p in await list_paused(await c.pool(), schema=c.schema)}
    return await c.render(
        request, "pause.html", {"domain": domain, "verb": verb, "paused": paused.get(domain)}
    )


async def pause_domain(c: Console, request: Request) -> Response:
    """Stop the domain's workers from starting commands (``commandbus.pause_domain``):
    the operator and reason are kept with the pause and logged."""
    user, form = await _acting(c, request)
    await c.require(user, Action.PAUSE_DOMAIN)
    domain = check_name("domain", request.path_params["domain"])
    reason = _one(form, "reason")
    if reason is None:
        raise ValidationError("reason", "a pause needs a reason (shown to every operator)")
    await core_pause(await c.pool(), domain, operator=user.name, reason=reason, schema=c.schema)
    c.load.forget()
    log.info("console: domain %s paused by %s: %s", domain, user.name, reason)
    return RedirectResponse(request.url_for("overview").path + f"?paused={domain}", status_code=303)


async def resume_domain(c: Console, request: Request) -> Response:
    """Let the domain's workers start commands again (``commandbus.resume_domain``)."""
    user, form = await _acting(c, request)
    await c.require(user, Action.RESUME_DOMAIN)
    domain = check_name("domain", request.path_params["domain"])
    reason = _one(form, "reason")
    if reason is None:
        raise ValidationError("reason", "a resume needs a reason (it goes to the log)")
    resumed = await core_resume(await c.pool(), domain, operator=user.name, schema=c.schema)
    c.load.forget()
    log.info(
        "console: domain %s %s by %s: %s",
        domain,
        "resumed" if resumed else "was not paused; resume asked",
        user.name,
        reason,
    )
    return RedirectResponse(
        request.url_for("overview").path + f"?resumed={domain}", status_code=303
    )
