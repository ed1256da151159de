"""SyncTroubleshootingQueue's bulk actions and search from blocking code, on a real
database: the same results and exceptions as the async queue, one thread crossing each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BulkResult,
    CommandBus,
    CommandNotFoundError,
    CommandStatus,
    ReplyOutcome,
    ReplyQueue,
    TroubleshootingFilter,
    ValidationError,
)
from commandbus_sync import SyncCommandBus, SyncRuntime, SyncTroubleshootingQueue
from core._parking import TRACEBACK, park_many

DOMAIN = "payments"
REPLIES = "ops-replies"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def tsq(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> SyncTroubleshootingQueue:
    return SyncTroubleshootingQueue(pool=sync_pool, runtime=runtime, schema=schema)


@pytest.fixture
def parked(runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str) -> Any:
    """``parked(n, **options)``: park ``n`` commands in DOMAIN (see core._parking)."""
    bus = CommandBus(sync_pool, schema=schema)

    def park(n: int, **options: Any) -> list[uuid.UUID]:
        options.setdefault("domain", DOMAIN)
        ids: list[uuid.UUID] = runtime.run(park_many, bus, sync_pool, schema, n, **options)
        return ids

    return park


def test_bulk_actions_from_blocking_code(
    tsq: SyncTroubleshootingQueue, sync_bus: SyncCommandBus, parked: Any
) -> None:
    retry = parked(3, command_type="Pay")
    cancel = parked(2, command_type="Ship", reply_to=REPLIES)
    complete = parked(1, command_type="Refund", reply_to=REPLIES)

    dry = tsq.retry_many(TroubleshootingFilter(command_type="Pay"), operator="op", dry_run=True)
    assert isinstance(dry, BulkResult) and (dry.count, dry.dry_run) == (3, True)
    assert tsq.count_troubleshooting(DOMAIN) == 6  # the dry run wrote nothing

    done = tsq.retry_many(TroubleshootingFilter(command_type="Pay"), operator="op", reason="r")
    assert done.commands == dry.commands and sorted(c for _, c in done.commands) == sorted(retry)
    canceled = tsq.cancel_many(
        TroubleshootingFilter(command_ids=cancel), operator="op", reason="duplicate"
    )
    completed = tsq.complete_many(
        TroubleshootingFilter(domain=DOMAIN), operator="op", result={"by": "hand"}, limit=5
    )

    assert (canceled.count, completed.count) == (2, 1)
    for command_id, status in [
        (retry[0], CommandStatus.PENDING),
        (cancel[0], CommandStatus.CANCELED),
        (complete[0], CommandStatus.COMPLETED),
    ]:
        meta = sync_bus.get_command(DOMAIN, command_id)
        assert meta is not None and meta.status == status
    replies = sync_bus.runtime.run(
        ReplyQueue(tsq.queue.pool, REPLIES, schema=tsq.queue.schema).read, 10
    )
    outcomes = sorted(r.outcome for r in replies)
    assert outcomes == sorted([ReplyOutcome.CANCELED] * 2 + [ReplyOutcome.SUCCESS])


def test_summary_find_and_show_from_blocking_code(
    tsq: SyncTroubleshootingQueue, parked: Any
) -> None:
    old = parked(2, parked_at=T0)
    new = parked(1, error_code="LATE", parked_at=T0 + timedelta(hours=1))

    groups = tsq.summary()
    assert [(g.error_code, g.count) for g in groups] == [("BROKEN", 2), ("LATE", 1)]
    first = tsq.find(limit=2)
    assert first.items[0].command_id == new[0] and first.next is not None
    rest = tsq.find(limit=2, after=first.next)
    assert rest.next is None
    assert {i.command_id for i in first.items + rest.items} == set(old + new)
    detail = tsq.show(DOMAIN, new[0])
    assert (detail.error_code, detail.traceback) == ("LATE", TRACEBACK)
    assert [e.event_type for e in detail.audit_trail] == ["SENT"]


def test_the_cores_errors_surface_unchanged(tsq: SyncTroubleshootingQueue, parked: Any) -> None:
    parked(1)
    with pytest.raises(ValidationError) as caught:
        tsq.retry_many(TroubleshootingFilter(), operator="op")
    assert caught.value.field == "where"
    with pytest.raises(ValidationError) as caught:
        tsq.cancel_many(TroubleshootingFilter(domain=DOMAIN), operator="op", reason="a\x00")
    assert caught.value.field == "reason"
    with pytest.raises(CommandNotFoundError):
        tsq.show(DOMAIN, uuid.uuid4())
    assert tsq.count_troubleshooting() == 1
