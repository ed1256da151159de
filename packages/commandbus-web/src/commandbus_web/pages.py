"""The read-only pages. Each reads through commandbus's public API and renders a template."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from commandbus import (
    CommandStatus,
    ProcessStatus,
    ValidationError,
    console,
    list_workers,
)
from commandbus.troubleshooting import (
    TroubleshootingCursor,
    TroubleshootingFilter,
    TroubleshootingPage,
)
from commandbus_web.charts import minute_series, sparkline_svg
from commandbus_web.console import Console, NotFound
from commandbus_web.inputs import parse_count, parse_time, parse_uuid

__all__ = [
    "batch",
    "batches",
    "command",
    "commands",
    "overview",
    "overview_live",
    "parked_replies",
    "process",
    "processes",
    "troubleshooting",
    "tsq_filter",
    "workers",
]

PAGE = 50
#: The error groups count at most this many of the newest matching parked commands.
GROUP_SCAN = 5_000
#: The deepest page of parked replies (they are few; the core allows this much).
MAX_OFFSET = 1_000_000


def _arg(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


# -- overview ------------------------------------------------------------------------


async def _overview_context(c: Console) -> dict[str, Any]:
    pool = await c.pool()

    async def read() -> tuple[console.Overview, list[Any]]:
        return (
            await console.overview(pool, schema=c.schema),
            await list_workers(pool, schema=c.schema),
        )

    # Every open overview refreshes itself every few seconds: one read serves them all.
    ov, registry = await c.load.cached(("overview",), read, "overview")
    live: dict[str, int] = defaultdict(int)
    for w in registry:
        if w.kind == "worker" and not w.stale:
            live[w.domain] += 1
    by_domain: dict[str, dict[str, list[tuple[Any, int]]]] = defaultdict(
        lambda: {"completed": [], "failed": []}
    )
    for p in ov.throughput:
        by_domain[p.domain]["completed"].append((p.minute, p.completed))
        by_domain[p.domain]["failed"].append((p.minute, p.failed))

    def chart(points: dict[str, list[tuple[Any, int]]], label: str) -> tuple[Markup, int, int]:
        done = minute_series(points["completed"], now=ov.now, minutes=ov.minutes)
        failed = minute_series(points["failed"], now=ov.now, minutes=ov.minutes)
        svg = sparkline_svg(
            [("completed/min", "completed", done), ("failed/min", "failed", failed)],
            title=label,
        )
        # sparkline_svg escapes every label; the rest is numbers it wrote.
        return Markup(svg), done[-1], failed[-1]

    total: dict[str, list[tuple[Any, int]]] = {"completed": [], "failed": []}
    rows = []
    for s in ov.domains:
        points = by_domain.get(s.domain, {"completed": [], "failed": []})
        total["completed"] += points["completed"]
        total["failed"] += points["failed"]
        svg, done_now, failed_now = chart(points, f"{s.domain}: finished per minute")
        rows.append(
            {
                "stats": s,
                "chart": svg,
                "completed_now": done_now,
                "failed_now": failed_now,
                "completed_total": sum(v for _, v in points["completed"]),
                "failed_total": sum(v for _, v in points["failed"]),
                "workers": live.get(s.domain, 0),
                "paused": ov.paused.get(s.domain),
            }
        )
    total_chart, total_done, total_failed = chart(total, "all domains: finished per minute")
    return {
        "ov": ov,
        "rows": rows,
        "total_chart": total_chart,
        "total_done": total_done,
        "total_failed": total_failed,
        "tsq_total": sum(min(s.troubleshooting, ov.cap + 1) for s in ov.domains),
        "workers_live": sum(live.values()),
    }


async def overview(c: Console, request: Request) -> Response:
    return await c.render(request, "overview.html", await _overview_context(c))


async def overview_live(c: Console, request: Request) -> Response:
    return await c.render(request, "_overview_live.html", await _overview_context(c))


# -- troubleshooting queue -----------------------------------------------------------

FILTER_FIELDS = ("domain", "type", "error_type", "error_code", "since", "until")


def tsq_filter(values: dict[str, str | None]) -> TroubleshootingFilter:
    """The filter of the troubleshooting page's fields (the CLI's names)."""
    return TroubleshootingFilter(
        domain=values.get("domain"),
        command_type=values.get("type"),
        error_type=values.get("error_type"),
        error_code=values.get("error_code"),
        parked_after=parse_time("since", values.get("since")),
        parked_before=parse_time("until", values.get("until")),
    )


async def troubleshooting(c: Console, request: Request) -> Response:
    values = {name: _arg(request, name) for name in FILTER_FIELDS}
    where = tsq_filter(values)
    after = _arg(request, "after")
    cursor = None if after is None else TroubleshootingCursor.from_token(after)
    pool = await c.pool()

    async def read_page() -> TroubleshootingPage:
        return await console.parked_page(pool, where, schema=c.schema, limit=PAGE, after=cursor)

    page = await c.load.cached(("parked", where, cursor), read_page)
    groups = None
    if cursor is None:  # the groups (and the count they add up to) on the first page only

        async def read() -> console.ErrorGroups:
            return await console.error_groups(pool, where, schema=c.schema, scan=GROUP_SCAN)

        groups = await c.load.cached(("groups", where), read)
    return await c.render(
        request,
        "tsq.html",
        {
            "values": values,
            "filtered": {k: v for k, v in values.items() if v},
            "page": page,
            "next_token": None if page.next is None else page.next.token,
            "groups": [] if groups is None else groups.groups[:100],
            "more_groups": groups is not None and len(groups.groups) > 100,
            "matching": None if groups is None else groups.counted,
            "complete": groups is None or groups.complete,
            "scan": GROUP_SCAN,
            "first_page": after is None,
        },
    )


# -- commands ------------------------------------------------------------------------

SEARCH_FIELDS = ("id", "correlation_id", "domain", "type", "status", "after_time", "before_time")


async def commands(c: Console, request: Request) -> Response:
    values = {name: _arg(request, name) for name in SEARCH_FIELDS}
    status = values["status"]
    if status is not None and status not in CommandStatus.__members__:
        raise ValidationError("status", f"{status!r} is not a command status")
    pool = await c.pool()
    page = await c.load.heavy(
        lambda: console.find_commands(
            pool,
            schema=c.schema,
            command_id=parse_uuid("id", values["id"]),
            correlation_id=parse_uuid("correlation_id", values["correlation_id"]),
            domain=values["domain"],
            command_type=values["type"],
            status=status,
            created_after=parse_time("after_time", values["after_time"]),
            created_before=parse_time("before_time", values["before_time"]),
            limit=PAGE,
            after=_arg(request, "after"),
        ),
        "search",
    )
    return await c.render(
        request,
        "commands.html",
        {
            "values": values,
            "filtered": {k: v for k, v in values.items() if v},
            "page": page,
            "statuses": [s.value for s in CommandStatus],
        },
    )


async def command(c: Console, request: Request) -> Response:
    domain = request.path_params["domain"]
    command_id = parse_uuid("command_id", request.path_params["command_id"])
    assert command_id is not None
    pool = await c.pool()
    detail = await console.command_detail(pool, domain, command_id, schema=c.schema)
    if detail is None:
        raise NotFound(f"no command {command_id} in domain {domain!r}")
    trail = await (await c.bus()).get_audit_trail(command_id, domain=domain)
    return await c.render(
        request,
        "command.html",
        {
            "d": detail,
            "cmd": detail.command,
            "trail": trail,
            "parked": detail.command.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE,
            # FAILED or parked: the error is why it stopped. Otherwise (completed after a
            # retry, pending a retry, canceled) it is an earlier attempt's.
            "error_is_current": detail.command.status
            in (CommandStatus.FAILED, CommandStatus.IN_TROUBLESHOOTING_QUEUE),
        },
    )


# -- batches -------------------------------------------------------------------------


async def batches(c: Console, request: Request) -> Response:
    domain = _arg(request, "domain")
    page = await console.list_batches(
        await c.pool(), schema=c.schema, domain=domain, limit=PAGE, after=_arg(request, "after")
    )
    return await c.render(request, "batches.html", {"page": page, "domain": domain})


async def batch(c: Console, request: Request) -> Response:
    domain = request.path_params["domain"]
    batch_id = parse_uuid("batch_id", request.path_params["batch_id"])
    assert batch_id is not None
    bus = await c.bus()
    info = await bus.get_batch(domain, batch_id)
    if info is None:
        raise NotFound(f"no batch {batch_id} in domain {domain!r}")
    status = _arg(request, "status")
    members = await bus.list_batch_commands(domain, batch_id, status=status, limit=100)
    return await c.render(
        request,
        "batch.html",
        {
            "b": info,
            "members": members,
            "status": status,
            "statuses": [s.value for s in CommandStatus],
        },
    )


# -- processes -----------------------------------------------------------------------


async def processes(c: Console, request: Request) -> Response:
    values = {name: _arg(request, name) for name in ("domain", "type", "status")}
    page = await console.list_processes(
        await c.pool(),
        schema=c.schema,
        domain=values["domain"],
        process_type=values["type"],
        status=values["status"],
        limit=PAGE,
        after=_arg(request, "after"),
    )
    return await c.render(
        request,
        "processes.html",
        {
            "page": page,
            "values": values,
            "filtered": {k: v for k, v in values.items() if v},
            "statuses": [s.value for s in ProcessStatus],
        },
    )


async def process(c: Console, request: Request) -> Response:
    process_id = parse_uuid("process_id", request.path_params["process_id"])
    assert process_id is not None
    repo = await c.processes()
    info = await repo.get(process_id)
    if info is None:
        raise NotFound(f"no process {process_id}")
    trail = await repo.get_audit_trail(process_id)
    return await c.render(request, "process.html", {"p": info, "trail": trail})


# -- workers and parked replies ------------------------------------------------------


async def workers(c: Console, request: Request) -> Response:
    found = await list_workers(await c.pool(), schema=c.schema, domain=_arg(request, "domain"))
    return await c.render(request, "workers.html", {"workers": found})


async def parked_replies(c: Console, request: Request) -> Response:
    queue = _arg(request, "queue")
    offset = parse_count("offset", _arg(request, "offset"), default=0, maximum=MAX_OFFSET)
    repo = await c.processes()
    found = await repo.list_parked_replies(queue=queue, limit=PAGE + 1, offset=offset)
    return await c.render(
        request,
        "replies.html",
        {
            "replies": found[:PAGE],
            "queue": queue,
            "offset": offset,
            "next_offset": offset + PAGE if len(found) > PAGE else None,
        },
    )
