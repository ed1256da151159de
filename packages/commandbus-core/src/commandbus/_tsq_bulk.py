"""Bulk operator actions: the troubleshooting queue's commands matching a filter, in chunks.

Each chunk is one transaction of two statements: ``tsq_pick`` locks up to :data:`CHUNK`
matching parked commands (``FOR UPDATE``: a row another operator holds is waited for and
checked again, so nothing is acted on twice), then ``tsq_retry_many`` or
``tsq_resolve_many`` acts on exactly those rows, with one audit event each and one
NOTIFY per woken channel.

Why a transaction per chunk rather than one for the whole call: the locks, WAL and
memory a transaction holds stay bounded whatever the filter matches, a single-command
action racing the bulk one waits for one chunk at most, and workers see retried commands
as soon as their chunk commits. The price: a call that fails midway (the server went
away) keeps the chunks it committed. Running it again with the same filter finishes the
job, since acted-on commands have left the queue.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus._store import act_on_parked, pick_parked
from commandbus._tsq_filter import cursor_params
from commandbus._tsq_types import BulkResult, PickedRow

__all__ = ["CHUNK", "BulkAction", "run_bulk"]

log = logging.getLogger("commandbus.troubleshooting")

#: Commands per chunk (per pick, per action statement, per transaction).
CHUNK = 1000


@dataclass(frozen=True)
class BulkAction:
    """What to do with each chunk: the statement, its fixed parameters, whom to wake."""

    #: The audit event type, also :attr:`BulkResult.action`.
    event_type: str
    #: ``tsq_retry_many`` or ``tsq_resolve_many``.
    statement: str
    #: The statement's parameters other than the chunk's ids and channels.
    params: dict[str, Any]
    #: The NOTIFY channels to wake for a chunk (once each, when it commits).
    channels: Callable[[list[PickedRow]], list[str]]


async def run_bulk(
    pool: AsyncConnectionPool,
    schema: str,
    action: BulkAction,
    match: dict[str, Any],
    *,
    limit: int | None,
    dry_run: bool,
) -> BulkResult:
    """Act on (or with ``dry_run`` only list) the parked commands ``match`` selects, newest
    parked first, at most ``limit``; validated parameters only."""
    touched: list[tuple[str, uuid.UUID]] = []
    position: dict[str, Any] = {**cursor_params(None), "as_of": None}
    try:
        async with pool.connection() as conn:
            while limit is None or len(touched) < limit:
                size = CHUNK if limit is None else min(CHUNK, limit - len(touched))
                params = {**match, **position, "limit": size}
                async with conn.transaction():
                    picked = await pick_parked(conn, schema, params, lock=not dry_run)
                    if not picked:
                        break
                    if dry_run:
                        touched += [(row.domain, row.command_id) for row in picked]
                    else:
                        touched += await _act(conn, schema, action, picked)
                last = picked[-1]
                position = {
                    "as_of": last.as_of,
                    "after_parked_at": last.parked_at,
                    "after_domain": last.domain,
                    "after_command_id": last.command_id,
                }
    except BaseException:
        if touched and not dry_run:
            log.warning(
                "%s interrupted after %d commands (committed) by operator %s",
                action.event_type,
                len(touched),
                action.params["operator"],
                extra={"outcome": action.event_type, "operator": action.params["operator"]},
            )
        raise
    result = BulkResult(action.event_type, dry_run, len(touched), touched)
    _log_bulk(result, action.params)
    return result


async def _act(
    conn: Any, schema: str, action: BulkAction, picked: list[PickedRow]
) -> list[tuple[str, uuid.UUID]]:
    params = {
        **action.params,
        "domains": [row.domain for row in picked],
        "command_ids": [row.command_id for row in picked],
        "channels": action.channels(picked),
    }
    acted = {
        (row.domain, row.command_id)
        for row in await act_on_parked(conn, action.statement, schema, params)
    }
    # In the order picked (newest parked first): an UPDATE returns rows in any order.
    return [key for row in picked if (key := (row.domain, row.command_id)) in acted]


def _log_bulk(result: BulkResult, params: dict[str, Any]) -> None:
    """One record per bulk action: INFO when it changed something, DEBUG for a dry run."""
    reason = params.get("reason")
    log.log(
        logging.DEBUG if result.dry_run else logging.INFO,
        "%s%s: operator %s on %d commands%s",
        result.action,
        " (dry run)" if result.dry_run else "",
        params["operator"],
        result.count,
        f" ({reason})" if reason else "",
        extra={
            "outcome": result.action,
            "operator": params["operator"],
            "count": result.count,
            "reason": reason,
            "dry_run": result.dry_run,
        },
    )
