"""The audit trail: one event per state change, written with the change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import AsyncConnection

from commandbus import AuditEvent, CommandBus, DuplicateCommandError, SendRequest


async def test_sending_writes_one_sent_event_with_the_message_id(bus: CommandBus) -> None:
    command_id = uuid.uuid4()
    result = await bus.send("payments", "Charge", command_id, {"amount": 1})

    (event,) = await bus.get_audit_trail(command_id)

    assert isinstance(event, AuditEvent)
    assert isinstance(event.audit_id, int)
    assert (event.domain, event.command_id, event.event_type) == ("payments", command_id, "SENT")
    assert event.details == {"msg_id": result.msg_id}
    assert event.created_at.tzinfo is not None
    assert abs(event.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_each_command_of_a_batch_gets_its_own_event(bus: CommandBus) -> None:
    requests = [SendRequest("payments", "Charge", uuid.uuid4(), {}) for _ in range(3)]
    results = await bus.send_batch(requests)

    for result in results:
        (event,) = await bus.get_audit_trail(result.command_id)
        assert (event.event_type, event.details) == ("SENT", {"msg_id": result.msg_id})


async def test_a_refused_duplicate_adds_no_event(bus: CommandBus) -> None:
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {})
    with pytest.raises(DuplicateCommandError):
        await bus.send("payments", "Charge", command_id, {})

    assert [e.event_type for e in await bus.get_audit_trail(command_id)] == ["SENT"]


async def test_a_rolled_back_send_leaves_no_event(bus: CommandBus, database_url: str) -> None:
    command_id = uuid.uuid4()
    async with await AsyncConnection.connect(database_url) as conn, conn.transaction():
        await bus.send("payments", "Charge", command_id, {}, conn=conn)
        raise psycopg.Rollback

    assert await bus.get_audit_trail(command_id) == []


async def test_the_domain_narrows_a_trail_shared_by_two_domains(bus: CommandBus) -> None:
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {})
    await bus.send("shipping", "Ship", command_id, {})

    both = await bus.get_audit_trail(command_id)
    assert sorted(e.domain for e in both) == ["payments", "shipping"]
    (shipping,) = await bus.get_audit_trail(command_id, domain="shipping")
    assert shipping.domain == "shipping"
    assert await bus.get_audit_trail(command_id, domain="billing") == []


async def test_events_come_in_the_order_they_happened(bus: CommandBus) -> None:
    command_id = uuid.uuid4()
    for domain in ("a", "b", "c", "d"):
        await bus.send(domain, "T", command_id, {})

    trail = await bus.get_audit_trail(command_id)

    assert [e.domain for e in trail] == ["a", "b", "c", "d"]
    assert [e.audit_id for e in trail] == sorted(e.audit_id for e in trail)
    assert [e.created_at for e in trail] == sorted(e.created_at for e in trail)


async def test_an_unknown_command_has_an_empty_trail(bus: CommandBus) -> None:
    assert await bus.get_audit_trail(uuid.uuid4()) == []
