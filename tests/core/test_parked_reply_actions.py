"""An operator's retry or discard of a parked reply says who and why, in the audit trail of
the command the reply answers, in the core, the sync twin and the CLI."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, InvalidOperationError, ProcessRepository, ValidationError
from core.helpers import execute
from core.test_cli import db, run_many

DOMAIN = "orders"
QUEUE = "order-replies"


async def park(pool: AsyncConnectionPool, schema: str, command_id: uuid.UUID) -> int:
    """A reply the router set aside (as for an unknown process); its parked id."""
    rows = await execute(
        pool,
        schema,
        "INSERT INTO {schema}.parked_replies (queue, domain, command_id, command_type, "
        "outcome, error_code, read_ct, reason_code, reason) VALUES (%s, %s, %s, 'Charge', "
        "'FAILED', 'DECLINED', 1, 'UNKNOWN_PROCESS', 'no process') RETURNING parked_id",
        [QUEUE, DOMAIN, command_id],
    )
    return int(rows[0][0])


async def operator_events(bus: CommandBus, command_id: uuid.UUID) -> list[tuple[str, Any]]:
    trail = await bus.get_audit_trail(command_id, domain=DOMAIN)
    return [(e.event_type, e.details) for e in trail if e.event_type.startswith("OPERATOR_")]


async def test_a_retry_puts_the_reply_back_and_records_operator_and_reason(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, caplog: pytest.LogCaptureFixture
) -> None:
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Charge", command_id, {})
    parked_id = await park(pool, schema, command_id)
    repo = ProcessRepository(pool, schema=schema)

    with caplog.at_level(logging.INFO, logger="commandbus.process"):
        await repo.retry_parked_reply(parked_id, operator="alice", reason="router redeployed")

    assert await repo.list_parked_replies() == []
    queued = await execute(pool, schema, "SELECT msg_id, queue FROM {schema}.replies")
    assert [row[1] for row in queued] == [QUEUE]
    ((event, details),) = await operator_events(bus, command_id)
    assert event == "OPERATOR_REPLY_RETRY"
    assert details == {
        "operator": "alice",
        "reason": "router redeployed",
        "parked_id": parked_id,
        "queue": QUEUE,
        "parked_reason": "UNKNOWN_PROCESS",
        "msg_id": queued[0][0],
    }
    (record,) = [r for r in caplog.records if r.name == "commandbus.process"]
    assert "alice" in record.getMessage() and "router redeployed" in record.getMessage()


async def test_a_discard_needs_a_reason_and_records_what_the_reply_said(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    command_id = uuid.uuid4()
    parked_id = await park(pool, schema, command_id)
    repo = ProcessRepository(pool, schema=schema)

    with pytest.raises(TypeError):
        await repo.discard_parked_reply(parked_id, operator="bob")  # type: ignore[call-arg]
    await repo.discard_parked_reply(parked_id, operator="bob", reason="order redone by hand")

    assert await repo.list_parked_replies() == []
    assert await execute(pool, schema, "SELECT count(*) FROM {schema}.replies") == [(0,)]
    ((event, details),) = await operator_events(bus, command_id)
    assert event == "OPERATOR_REPLY_DISCARD"
    assert details["operator"] == "bob" and details["reason"] == "order redone by hand"
    assert details["outcome"] == "FAILED" and details["error_code"] == "DECLINED"
    with pytest.raises(InvalidOperationError, match="no parked reply"):
        await repo.discard_parked_reply(parked_id, operator="bob", reason="again")


@pytest.mark.parametrize(
    ("action", "kwargs", "field"),
    [
        ("retry", {"operator": None}, "operator"),
        ("retry", {"operator": ""}, "operator"),
        ("retry", {"operator": "a\ud800b"}, "operator"),
        ("retry", {"operator": "ok", "reason": "a\udcffb"}, "reason"),
        ("retry", {"operator": "ok", "reason": "x" * 4097}, "reason"),
        ("discard", {"operator": "ok", "reason": None}, "reason"),
        ("discard", {"operator": "ok", "reason": "  "}, "reason"),
        ("discard", {"operator": "nul\x00", "reason": "why"}, "operator"),
    ],
)
async def test_a_bad_operator_or_reason_is_refused_and_changes_nothing(
    pool: AsyncConnectionPool,
    schema: str,
    bus: CommandBus,
    action: str,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    command_id = uuid.uuid4()
    parked_id = await park(pool, schema, command_id)
    repo = ProcessRepository(pool, schema=schema)
    act = repo.retry_parked_reply if action == "retry" else repo.discard_parked_reply

    with pytest.raises(ValidationError) as caught:
        await act(parked_id, **kwargs)

    assert caught.value.field == field
    assert [p.parked_id for p in await repo.list_parked_replies()] == [parked_id]
    assert await operator_events(bus, command_id) == []


async def test_the_cli_lists_retries_and_discards_with_operator_and_reason(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    kept, dropped = await park(pool, schema, first), await park(pool, schema, second)

    listed, no_reason = await run_many(
        db(database_url, schema, "--json", "replies", "list", "--queue", QUEUE),
        db(database_url, schema, "replies", "discard", str(dropped)),
    )
    retried, discarded = await run_many(
        db(database_url, schema, "replies", "retry", str(kept), "--reason", "fixed"),
        db(database_url, schema, "replies", "discard", str(dropped), "--reason", "stale"),
    )

    assert sorted(p["parked_id"] for p in listed.json()) == [kept, dropped]
    assert "--reason" in no_reason.one_line_error(2)
    assert retried.status == 0 and "back on its queue" in retried.stdout, retried.stderr
    assert discarded.status == 0, discarded.stderr
    ((event, details),) = await operator_events(bus, first)
    assert (event, details["operator"], details["reason"]) == (
        "OPERATOR_REPLY_RETRY",
        "night-shift",  # $USER of the test runs
        "fixed",
    )
    ((event, details),) = await operator_events(bus, second)
    assert (event, details["reason"]) == ("OPERATOR_REPLY_DISCARD", "stale")

    gone, bad_id = await run_many(
        db(database_url, schema, "replies", "retry", str(kept)),
        db(database_url, schema, "replies", "retry", "0"),
    )
    assert "no parked reply" in gone.one_line_error(2)
    assert "ID" in bad_id.one_line_error(2)
