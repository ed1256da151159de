"""Bulk operator actions, search and the close look at one command (issue 14, item 1).

What an operator relies on: a filter selects exactly the parked commands it says, a dry
run shows exactly what the real run then does and writes nothing, every command acted on
gets one audit event with the operator and the reason, replies and wake-ups go out as for
the single actions, bad input writes nothing, and a bulk action racing other operators
and running workers acts on each command exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

import commandbus._tsq_bulk
from commandbus import (
    BulkResult,
    Command,
    CommandBus,
    CommandNotFoundError,
    CommandStatus,
    ErrorGroup,
    HandlerContext,
    HandlerRegistry,
    InvalidOperationError,
    PermanentCommandError,
    ReplyOutcome,
    ReplyQueue,
    TroubleshootingCursor,
    TroubleshootingFilter,
    TroubleshootingQueue,
    ValidationError,
    _sql,
)
from commandbus._store import parked_match
from core._parking import TRACEBACK, park, park_many
from core.helpers import execute, make_worker, running, wait_for_count, wait_for_status, wait_until

DOMAIN = "orders"
REPLIES = "ops-replies"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def tsq(pool: AsyncConnectionPool, schema: str) -> TroubleshootingQueue:
    return TroubleshootingQueue(pool, schema=schema)


async def statuses(pool: AsyncConnectionPool, schema: str) -> dict[uuid.UUID, str]:
    rows = await execute(pool, schema, "SELECT command_id, status FROM {schema}.commands")
    return dict(rows)


async def operator_events(pool: AsyncConnectionPool, schema: str) -> list[tuple[Any, ...]]:
    """(command_id, event_type, details) of every operator audit event, in order."""
    return list(
        await execute(
            pool,
            schema,
            "SELECT command_id, event_type, details FROM {schema}.audit"
            " WHERE event_type LIKE 'OPERATOR_%%' ORDER BY audit_id",
        )
    )


async def snapshot(pool: AsyncConnectionPool, schema: str) -> tuple[Any, ...]:
    """Everything a bulk action could write: command rows, audit rows, replies."""
    tables = []
    for table in ("commands", "audit", "replies"):
        tables.append(
            await execute(pool, schema, f"SELECT * FROM {{schema}}.{table} ORDER BY 1, 2")
        )
    return tuple(tables)


# -- filters select exactly what they say ------------------------------------------------


async def test_retry_many_retries_exactly_the_matching_commands_and_audits_each(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    pays = await park_many(bus, pool, schema, 5, command_type="Pay")
    ships = await park_many(bus, pool, schema, 2, command_type="Ship")
    other = await park_many(bus, pool, schema, 2, domain="billing", command_type="Pay")

    done = await tsq.retry_many(
        TroubleshootingFilter(domain=DOMAIN, command_type="Pay"),
        operator="alice",
        reason="fixed in v2.3",
    )

    assert (done.action, done.dry_run, done.count) == ("OPERATOR_RETRY", False, 5)
    assert sorted(done.commands) == sorted((DOMAIN, i) for i in pays)
    now = await statuses(pool, schema)
    assert {now[i] for i in pays} == {"PENDING"}
    assert {now[i] for i in ships + other} == {"IN_TROUBLESHOOTING_QUEUE"}
    events = await operator_events(pool, schema)
    assert sorted(e[0] for e in events) == sorted(pays)
    for _, event_type, details in events:
        assert event_type == "OPERATOR_RETRY"
        assert (details["operator"], details["reason"]) == ("alice", "fixed in v2.3")
        assert isinstance(details["msg_id"], int)
    rows = await execute(
        pool, schema, "SELECT attempts, vt <= now() FROM {schema}.commands WHERE status = 'PENDING'"
    )
    assert set(rows) == {(0, True)}


async def test_each_criterion_narrows_the_selection(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    old = await park_many(bus, pool, schema, 2, parked_at=T0)
    mid = await park_many(bus, pool, schema, 2, parked_at=T0 + timedelta(hours=1))
    new = await park_many(bus, pool, schema, 2, parked_at=T0 + timedelta(hours=2))
    timeout = await park_many(
        bus, pool, schema, 3, error_type="TimeoutError", error_code=None, parked_at=T0
    )
    ship = await park_many(bus, pool, schema, 1, command_type="Ship", error_code="NO_STOCK")

    async def selected(**criteria: Any) -> set[uuid.UUID]:
        result = await tsq.retry_many(
            TroubleshootingFilter(**criteria), operator="op", dry_run=True
        )
        return {command_id for _, command_id in result.commands}

    assert await selected(domain=DOMAIN) == set(old + mid + new + timeout + ship)
    assert await selected(command_type="Ship") == set(ship)
    assert await selected(error_type="TimeoutError") == set(timeout)
    assert await selected(error_code="NO_STOCK") == set(ship)
    assert await selected(error_code="BROKEN", command_type="Pay") == set(old + mid + new)
    hour = T0 + timedelta(hours=1)
    assert await selected(parked_after=hour, parked_before=T0 + timedelta(hours=2)) == set(mid)
    assert await selected(parked_before=hour) == set(old + timeout)
    assert await selected(parked_after=hour, error_code="BROKEN", command_type="Pay") == set(
        mid + new
    )
    assert await selected(command_ids=[old[0], ship[0], uuid.uuid4()]) == {old[0], ship[0]}
    assert await selected(command_ids=[old[0]], domain="billing") == set()


async def test_a_dry_run_writes_nothing_and_lists_what_the_real_run_then_does(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    await park_many(bus, pool, schema, 4, reply_to=REPLIES)
    await park_many(bus, pool, schema, 2, error_code="OTHER")
    where = TroubleshootingFilter(domain=DOMAIN, error_code="BROKEN")
    before = await snapshot(pool, schema)

    dry = {
        "retry": await tsq.retry_many(where, operator="op", dry_run=True),
        "cancel": await tsq.cancel_many(where, operator="op", reason="r", dry_run=True),
        "complete": await tsq.complete_many(where, operator="op", dry_run=True),
    }

    assert await snapshot(pool, schema) == before
    assert [(r.action, r.dry_run, r.count) for r in dry.values()] == [
        ("OPERATOR_RETRY", True, 4),
        ("OPERATOR_CANCEL", True, 4),
        ("OPERATOR_COMPLETE", True, 4),
    ]
    real = await tsq.cancel_many(where, operator="op", reason="r")
    assert real.commands == dry["cancel"].commands
    assert real.dry_run is False


async def test_limit_bounds_the_count_newest_parked_first(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = []
    for hour in range(5):
        ids += await park_many(bus, pool, schema, 1, parked_at=T0 + timedelta(hours=hour))
    where = TroubleshootingFilter(domain=DOMAIN)

    done = await tsq.complete_many(where, operator="op", limit=2)

    assert done.commands == [(DOMAIN, ids[4]), (DOMAIN, ids[3])]
    assert await tsq.count_troubleshooting(DOMAIN) == 3
    assert (await tsq.retry_many(where, operator="op", limit=10)).count == 3


async def test_chunks_together_act_on_every_command_once(
    tsq: TroubleshootingQueue,
    bus: CommandBus,
    pool: AsyncConnectionPool,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several chunks (3 commands each), commands with equal parked times across a chunk
    boundary, and a limit that ends inside a chunk."""
    monkeypatch.setattr(commandbus._tsq_bulk, "CHUNK", 3)
    ids = await park_many(bus, pool, schema, 10, parked_at=T0)
    ids += await park_many(bus, pool, schema, 4, domain="billing", parked_at=T0)
    where = TroubleshootingFilter(parked_before=T0 + timedelta(days=1))

    dry = await tsq.retry_many(where, operator="op", dry_run=True)
    assert dry.count == 14 and len(set(dry.commands)) == 14
    first = await tsq.retry_many(where, operator="op", limit=7)
    rest = await tsq.retry_many(where, operator="op")

    assert first.count == 7 and rest.count == 7
    assert first.commands + rest.commands == dry.commands
    assert sorted(e[0] for e in await operator_events(pool, schema)) == sorted(ids)


async def test_commands_parked_after_the_call_started_are_left_alone(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    """Only what was parked when the call started is acted on: a command retried by an
    early chunk that fails at once and is parked again is not retried twice by one call."""
    now = await park_many(bus, pool, schema, 2)
    later = await park_many(bus, pool, schema, 1, parked_at=datetime.now(UTC) + timedelta(hours=1))
    done = await tsq.retry_many(TroubleshootingFilter(domain=DOMAIN), operator="op")
    assert {c for _, c in done.commands} == set(now)
    assert (await statuses(pool, schema))[later[0]] == "IN_TROUBLESHOOTING_QUEUE"


# -- replies, wake-ups, logs --------------------------------------------------------------


async def test_cancel_many_and_complete_many_reply_as_the_single_actions_do(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    cancel = await park_many(bus, pool, schema, 3, command_type="Pay", reply_to=REPLIES)
    complete = await park_many(bus, pool, schema, 2, command_type="Ship", reply_to=REPLIES)
    silent = await park_many(bus, pool, schema, 1, command_type="Ship", error_code="X")

    canceled = await tsq.cancel_many(
        TroubleshootingFilter(command_type="Pay"), operator="alice", reason="duplicate orders"
    )
    completed = await tsq.complete_many(
        TroubleshootingFilter(command_type="Ship"),
        operator="bob",
        result={"manual": True},
        reason="shipped by hand",
    )

    assert (canceled.count, completed.count) == (3, 3)
    replies = await ReplyQueue(pool, REPLIES, schema=schema).read(10)
    by_id = {r.command_id: r for r in replies}
    assert set(by_id) == set(cancel + complete)  # no reply_to, no reply
    for command_id in cancel:
        reply = by_id[command_id]
        assert (reply.outcome, reply.error_code) == (ReplyOutcome.CANCELED, "CANCELED")
        assert reply.error_message == "duplicate orders"
    for command_id in complete:
        reply = by_id[command_id]
        assert (reply.outcome, reply.result) == (ReplyOutcome.SUCCESS, {"manual": True})
        assert reply.error_message is None
    for command_id in complete + silent:
        meta = await bus.get_command(DOMAIN, command_id)
        assert meta is not None and meta.status == CommandStatus.COMPLETED
        assert meta.result == {"manual": True}
    details = {e[0]: (e[1], e[2]) for e in await operator_events(pool, schema)}
    assert details[cancel[0]] == (
        "OPERATOR_CANCEL",
        {"operator": "alice", "reason": "duplicate orders"},
    )
    assert details[silent[0]] == (
        "OPERATOR_COMPLETE",
        {"operator": "bob", "reason": "shipped by hand"},
    )


async def test_bulk_replies_carry_their_commands_trace_context(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    """As operator_resolve's: a saga's trace goes on through an operator's bulk cancel."""
    traced, untraced = await park_many(bus, pool, schema, 2, reply_to=REPLIES)
    context = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET trace_context = %s::jsonb WHERE command_id = %s",
        [json.dumps(context), traced],
    )
    await tsq.cancel_many(TroubleshootingFilter(domain=DOMAIN), operator="op", reason="r")
    replies = await ReplyQueue(pool, REPLIES, schema=schema).read(10)
    assert {r.command_id: r.trace_context for r in replies} == {traced: context, untraced: None}


async def test_bulk_retry_wakes_the_idle_workers_of_each_domain(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    registry = HandlerRegistry()

    async def ok(command: Command, ctx: HandlerContext) -> dict[str, int]:
        return {"attempt": ctx.attempt}

    for domain in (DOMAIN, "billing"):
        registry.register(domain, "Pay", ok)
    ids = await park_many(bus, pool, schema, 20)
    ids += await park_many(bus, pool, schema, 5, domain="billing")
    # Polling once a minute: only the NOTIFY can deliver the retried commands in time.
    workers = [
        make_worker(pool, schema, registry, domain=d, poll_interval=60) for d in (DOMAIN, "billing")
    ]
    async with running(workers[0]), running(workers[1]):
        done = await tsq.retry_many(TroubleshootingFilter(command_type="Pay"), operator="op")
        await wait_for_count(pool, schema, CommandStatus.COMPLETED, 25)
    assert done.count == 25


async def test_one_info_record_per_bulk_action(
    tsq: TroubleshootingQueue,
    bus: CommandBus,
    pool: AsyncConnectionPool,
    schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await park_many(bus, pool, schema, 3)
    with caplog.at_level(logging.INFO, logger="commandbus.troubleshooting"):
        await tsq.retry_many(TroubleshootingFilter(domain=DOMAIN), operator="op", dry_run=True)
        await tsq.cancel_many(TroubleshootingFilter(domain=DOMAIN), operator="eve", reason="dup")
    records = [r for r in caplog.records if r.name == "commandbus.troubleshooting"]
    assert len(records) == 1
    record: Any = records[0]
    assert record.levelno == logging.INFO
    assert (record.outcome, record.count, record.operator, record.reason) == (
        "OPERATOR_CANCEL",
        3,
        "eve",
        "dup",
    )
    assert "eve" in record.getMessage() and "3 commands" in record.getMessage()


# -- races ----------------------------------------------------------------------------------


@asynccontextmanager
async def holding_rows(
    pool: AsyncConnectionPool, schema: str, ids: list[uuid.UUID]
) -> AsyncIterator[None]:
    """Lock these command rows until the block ends, so that operators line up on them."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            f'SELECT 1 FROM "{schema}".commands WHERE command_id = ANY (%s) FOR UPDATE', [ids]
        )
        yield


async def blocked_on_locks(pool: AsyncConnectionPool, schema: str, n: int) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND position(%s IN query) > 0",
            [schema],
        )
        row = await cur.fetchone()
    return row is not None and row[0] >= n


async def test_bulk_retry_racing_another_operator_acts_on_each_command_exactly_once(
    tsq: TroubleshootingQueue,
    bus: CommandBus,
    pool: AsyncConnectionPool,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Operator A bulk-retries 40 commands (chunks of 5) while operator B completes 10 of
    them one by one. Both reach a held row before either acts; once it is released they
    interleave. Every command ends with exactly one operator event; B's refusals are
    commands A retried, and A never touched what B completed."""
    monkeypatch.setattr(commandbus._tsq_bulk, "CHUNK", 5)
    ids = await park_many(bus, pool, schema, 40)
    contested = ids[::4]
    async with holding_rows(pool, schema, [contested[0], ids[-1]]):
        bulk = asyncio.create_task(
            tsq.retry_many(TroubleshootingFilter(domain=DOMAIN), operator="alice", reason="r")
        )
        singles = [
            asyncio.create_task(tsq.operator_complete(DOMAIN, c, operator="bob", reason="by hand"))
            for c in contested
        ]
        # A waits on its first chunk's held row (the newest parked), B on contested[0].
        await wait_until(lambda: blocked_on_locks(pool, schema, 2), what="both operators to block")
    retried = await bulk
    outcomes = await asyncio.gather(*singles, return_exceptions=True)

    completed = {c for c, o in zip(contested, outcomes, strict=True) if o is None}
    refused = {c for c, o in zip(contested, outcomes, strict=True) if o is not None}
    assert all(isinstance(o, InvalidOperationError) for o in outcomes if o is not None)
    retried_ids = {c for _, c in retried.commands}
    assert retried.count == len(retried_ids) == 40 - len(completed)
    assert retried_ids.isdisjoint(completed) and refused <= retried_ids
    assert retried_ids | completed == set(ids)
    events = await operator_events(pool, schema)
    assert sorted(e[0] for e in events) == sorted(ids)  # one event per command
    now = await statuses(pool, schema)
    assert {now[c] for c in completed} <= {"COMPLETED"}
    assert {now[c] for c in retried_ids} == {"PENDING"}


async def test_two_bulk_actions_at_once_split_the_commands_between_them(
    tsq: TroubleshootingQueue,
    bus: CommandBus,
    pool: AsyncConnectionPool,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commandbus._tsq_bulk, "CHUNK", 4)
    ids = await park_many(bus, pool, schema, 30)
    where = TroubleshootingFilter(domain=DOMAIN)
    async with holding_rows(pool, schema, ids):
        actions = [
            asyncio.create_task(tsq.retry_many(where, operator="alice")),
            asyncio.create_task(tsq.cancel_many(where, operator="bob", reason="dup")),
        ]
        await wait_until(lambda: blocked_on_locks(pool, schema, 2), what="both operators to block")
    results: list[BulkResult] = await asyncio.gather(*actions)
    touched = [c for result in results for _, c in result.commands]
    assert sorted(touched) == sorted(ids)
    assert sorted(e[0] for e in await operator_events(pool, schema)) == sorted(ids)


async def test_bulk_retry_with_workers_running_and_failing_again(
    tsq: TroubleshootingQueue,
    bus: CommandBus,
    pool: AsyncConnectionPool,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that parks retried commands again at once, while later chunks are still
    being retried: one call retries each command once."""
    monkeypatch.setattr(commandbus._tsq_bulk, "CHUNK", 5)
    registry = HandlerRegistry()

    async def broken(command: Command, ctx: HandlerContext) -> None:
        raise PermanentCommandError("STILL_BROKEN", "no")

    registry.register(DOMAIN, "Pay", broken)
    ids = await park_many(bus, pool, schema, 50)
    async with running(make_worker(pool, schema, registry, concurrency=8)):
        done = await tsq.retry_many(TroubleshootingFilter(domain=DOMAIN), operator="op")

        async def all_parked_again() -> bool:
            rows = await execute(
                pool,
                schema,
                "SELECT count(*) FROM {schema}.commands WHERE last_error_code = 'STILL_BROKEN'"
                " AND status = 'IN_TROUBLESHOOTING_QUEUE'",
            )
            return bool(rows[0][0] == 50)

        await wait_until(all_parked_again, what="the retried commands to be parked again")
    assert done.count == 50
    assert sorted(e[0] for e in await operator_events(pool, schema)) == sorted(ids)


# -- bad input writes nothing ---------------------------------------------------------------


async def test_bad_input_is_refused_naming_the_argument_and_writes_nothing(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await park_many(bus, pool, schema, 2)
    before = await snapshot(pool, schema)
    where = TroubleshootingFilter(domain=DOMAIN)
    naive = datetime(2026, 1, 1)
    bad: list[tuple[str, Any]] = [
        ("where", tsq.retry_many(TroubleshootingFilter(), operator="op")),
        ("where", tsq.retry_many(None, operator="op")),  # type: ignore[arg-type]
        ("operator", tsq.retry_many(where, operator="")),
        ("operator", tsq.retry_many(where, operator="   ")),
        ("operator", tsq.retry_many(where, operator=None)),  # type: ignore[arg-type]
        ("operator", tsq.cancel_many(where, operator="a\x00b", reason="r")),
        ("reason", tsq.retry_many(where, operator="op", reason="x\x00")),
        ("reason", tsq.cancel_many(where, operator="op", reason="")),
        ("reason", tsq.complete_many(where, operator="op", reason="\ud800")),
        ("result", tsq.complete_many(where, operator="op", result=[1])),  # type: ignore[arg-type]
        ("limit", tsq.retry_many(where, operator="op", limit=0)),
        ("limit", tsq.retry_many(where, operator="op", limit=True)),
        ("dry_run", tsq.retry_many(where, operator="op", dry_run="yes")),  # type: ignore[arg-type]
        ("domain", tsq.retry_many(TroubleshootingFilter(domain="no spaces"), operator="op")),
        ("command_type", tsq.retry_many(TroubleshootingFilter(command_type=""), operator="op")),
        ("error_code", tsq.retry_many(TroubleshootingFilter(error_code="\x00"), operator="op")),
        ("error_type", tsq.retry_many(TroubleshootingFilter(error_type=3), operator="op")),  # type: ignore[arg-type]
        ("parked_after", tsq.retry_many(TroubleshootingFilter(parked_after=naive), operator="op")),
        (
            "parked_before",
            tsq.cancel_many(TroubleshootingFilter(parked_before="2026"), operator="op", reason="r"),
        ),  # type: ignore[arg-type]
        ("command_ids", tsq.retry_many(TroubleshootingFilter(command_ids=[]), operator="op")),
        (
            "command_ids",
            tsq.retry_many(TroubleshootingFilter(command_ids=str(ids[0])), operator="op"),
        ),  # type: ignore[arg-type]
        (
            "command_ids",
            tsq.retry_many(TroubleshootingFilter(command_ids=[ids[0], "x"]), operator="op"),
        ),  # type: ignore[list-item]
        ("reason", tsq.operator_retry(DOMAIN, ids[0], operator="op", reason="a\x00")),
        ("operator", tsq.operator_complete(DOMAIN, ids[0], operator="\x00")),
        ("where", tsq.summary("orders")),  # type: ignore[arg-type]
        ("limit", tsq.find(where, limit=0)),
        ("after", tsq.find(where, after="token")),  # type: ignore[arg-type]
    ]
    for field, call in bad:
        with pytest.raises(ValidationError) as caught:
            await call
        assert caught.value.field == field, (field, caught.value)
    assert await snapshot(pool, schema) == before


# -- searching: summary, find, show ---------------------------------------------------------


async def test_summary_groups_parked_commands_by_how_they_failed(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    await park_many(bus, pool, schema, 3, message="old", parked_at=T0)
    await park_many(bus, pool, schema, 1, message="newest", parked_at=T0 + timedelta(hours=1))
    await park_many(bus, pool, schema, 2, error_type="TimeoutError", error_code=None, parked_at=T0)
    await park_many(bus, pool, schema, 1, domain="billing", parked_at=T0)

    groups = await tsq.summary()
    assert groups == [
        ErrorGroup(
            DOMAIN,
            "Pay",
            "PermanentCommandError",
            "BROKEN",
            4,
            T0,
            T0 + timedelta(hours=1),
            "newest",
        ),
        ErrorGroup(DOMAIN, "Pay", "TimeoutError", None, 2, T0, T0, "boom"),
        ErrorGroup("billing", "Pay", "PermanentCommandError", "BROKEN", 1, T0, T0, "boom"),
    ]
    assert [g.count for g in await tsq.summary(TroubleshootingFilter(domain="billing"))] == [1]
    assert await tsq.summary(TroubleshootingFilter(domain="nothing")) == []


async def test_find_pages_through_every_match_once_newest_parked_first(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = []
    for hour in range(3):  # equal parked times within each hour, across two domains
        at = T0 + timedelta(hours=hour)
        ids += await park_many(bus, pool, schema, 4, parked_at=at)
        ids += await park_many(bus, pool, schema, 3, domain="billing", parked_at=at)
    await park_many(bus, pool, schema, 2, command_type="Ship")

    seen: list[tuple[datetime, str, uuid.UUID]] = []
    after: TroubleshootingCursor | None = None
    pages = 0
    while True:
        page = await tsq.find(TroubleshootingFilter(command_type="Pay"), limit=5, after=after)
        pages += 1
        seen += [(i.updated_at, i.domain, i.command_id) for i in page.items]
        if page.next is None:
            break
        after = TroubleshootingCursor.from_token(page.next.token)  # survives a round trip
    assert pages == 5  # 21 items: four full pages and one of one, no empty last page
    assert sorted(c for _, _, c in seen) == sorted(ids)
    assert seen == sorted(seen, reverse=True)
    first = (await tsq.find(limit=1)).items[0]
    assert first.command_type == "Ship"  # parked now, after everything at T0
    assert first.last_error_traceback == TRACEBACK


async def test_find_reads_the_parked_keyset_index_without_sorting(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    await park_many(bus, pool, schema, 50)
    statement = _sql.query("tsq_find", schema, match=parked_match(schema))
    params = {
        "domain": None,
        "command_type": "Pay",
        "error_type": None,
        "error_code": None,
        "parked_after": None,
        "parked_before": None,
        "command_ids": None,
        "after_parked_at": T0,
        "after_domain": DOMAIN,
        "after_command_id": uuid.uuid4(),
        "limit": 51,
    }
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        cur = await conn.execute(b"EXPLAIN " + statement, params)
        plan = "\n".join(row[0] for row in await cur.fetchall())
    assert "commands_parked_keyset_idx" in plan, plan
    assert "Sort" not in plan, plan


async def test_show_has_the_whole_row_traceback_and_audit_trail_whatever_the_status(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    (command_id,) = await park_many(bus, pool, schema, 1, reply_to=REPLIES)
    parked = await tsq.show(DOMAIN, command_id)
    assert (parked.status, parked.data, parked.result) == (
        CommandStatus.IN_TROUBLESHOOTING_QUEUE,
        {"n": 0},
        None,
    )
    assert (parked.error_type, parked.error_code, parked.error_message) == (
        "PermanentCommandError",
        "BROKEN",
        "boom",
    )
    assert parked.traceback == TRACEBACK and parked.parked_at == parked.updated_at
    assert [e.event_type for e in parked.audit_trail] == ["SENT"]

    await tsq.operator_complete(DOMAIN, command_id, result={"ok": 1}, operator="op", reason="why")
    done = await tsq.show(DOMAIN, command_id)
    assert (done.status, done.result, done.parked_at) == (CommandStatus.COMPLETED, {"ok": 1}, None)
    last = done.audit_trail[-1]
    assert (last.event_type, last.details) == (
        "OPERATOR_COMPLETE",
        {"operator": "op", "reason": "why"},
    )
    with pytest.raises(CommandNotFoundError):
        await tsq.show(DOMAIN, uuid.uuid4())
    with pytest.raises(CommandNotFoundError):
        await tsq.show("billing", command_id)


async def test_single_actions_record_their_reason(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    retry, complete = await park_many(bus, pool, schema, 2, reply_to=REPLIES)
    await tsq.operator_retry(DOMAIN, retry, operator="op", reason="deployed the fix")
    await tsq.operator_complete(DOMAIN, complete, operator="op", reason="refunded by hand")
    events = {e[0]: e[2] for e in await operator_events(pool, schema)}
    assert events[retry]["reason"] == "deployed the fix"
    assert events[complete] == {"operator": "op", "reason": "refunded by hand"}
    (reply,) = await ReplyQueue(pool, REPLIES, schema=schema).read()
    assert (reply.outcome, reply.error_message) == (ReplyOutcome.SUCCESS, None)


async def test_a_cursor_token_from_elsewhere_is_refused() -> None:
    for token in ("", "not base64!", "bm90IGpzb24", "WzEsMiwzXQ"):
        with pytest.raises(ValidationError) as caught:
            TroubleshootingCursor.from_token(token)
        assert caught.value.field == "after"


async def test_a_worker_parked_command_can_be_found_and_bulk_retried_to_completion(
    tsq: TroubleshootingQueue, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    """End to end with a real worker: a handler fails permanently, gets fixed, and the
    operator retries everything it parked with one call."""
    fixed = asyncio.Event()
    registry = HandlerRegistry()

    async def handler(command: Command, ctx: HandlerContext) -> dict[str, bool]:
        if not fixed.is_set():
            raise PermanentCommandError("UPSTREAM_DOWN", "payment provider unreachable")
        return {"paid": True}

    registry.register(DOMAIN, "Pay", handler)
    ids = [uuid.uuid4() for _ in range(5)]
    for command_id in ids:
        await bus.send(DOMAIN, "Pay", command_id, {})
    async with running(make_worker(pool, schema, registry)):
        await wait_for_count(pool, schema, CommandStatus.IN_TROUBLESHOOTING_QUEUE, 5)
        (group,) = await tsq.summary()
        assert (group.error_code, group.count) == ("UPSTREAM_DOWN", 5)
        assert group.sample_message == "payment provider unreachable"
        detail = await tsq.show(DOMAIN, ids[0])
        assert detail.traceback and "PermanentCommandError" in detail.traceback
        fixed.set()
        done = await tsq.retry_many(
            TroubleshootingFilter(error_code="UPSTREAM_DOWN"), operator="op", reason="provider back"
        )
        assert done.count == 5
        for command_id in ids:
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)


async def test_park_helper_leaves_rows_as_a_worker_would(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    """The fast parking used above matches what the worker writes (status, vt, error)."""
    (command_id,) = await park_many(bus, pool, schema, 1)
    await park(pool, schema, [command_id], "E", "C", "m")
    (row,) = await execute(
        pool,
        schema,
        "SELECT status, vt, last_error_type, last_error_code FROM {schema}.commands",
    )
    assert row == ("IN_TROUBLESHOOTING_QUEUE", None, "E", "C")
