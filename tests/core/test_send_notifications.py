"""Sending wakes workers: one NOTIFY on the domain's channel per transaction with due work.

Notifications arrive in commit order, so a "marker" sent on another domain afterwards
shows that nothing else was (or was not) notified before it, without waiting on a clock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import psycopg
import pytest
from psycopg import AsyncConnection, sql

from commandbus import CommandBus, DuplicateCommandError, SendRequest
from commandbus._channels import command_channel

MARKER = "marker"


@pytest.fixture
async def listener(database_url: str) -> AsyncIterator[AsyncConnection]:
    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        yield conn


async def _listen(conn: AsyncConnection, schema: str, *domains: str) -> None:
    for domain in (*domains, MARKER):
        channel = command_channel(schema, domain)
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))


async def _received_before_marker(
    bus: CommandBus, listener: AsyncConnection, schema: str
) -> list[str]:
    """Send a marker command, then return the channels notified before it, in order."""
    await bus.send(MARKER, "Mark", uuid.uuid4(), {})
    marker = command_channel(schema, MARKER)
    received: list[str] = []
    with anyio.fail_after(10):
        while marker not in received:
            received += [n.channel async for n in listener.notifies(timeout=5, stop_after=1)]
    return received[: received.index(marker)]


async def test_an_immediate_send_notifies_the_domain_channel_once(
    bus: CommandBus, listener: AsyncConnection, schema: str
) -> None:
    await _listen(listener, schema, "payments")
    await bus.send("payments", "Charge", uuid.uuid4(), {})

    before = await _received_before_marker(bus, listener, schema)
    assert before == [command_channel(schema, "payments")]


async def test_a_batch_notifies_once_however_many_commands_it_holds(
    bus: CommandBus, listener: AsyncConnection, schema: str
) -> None:
    await _listen(listener, schema, "payments")
    await bus.send_batch([SendRequest("payments", "Charge", uuid.uuid4(), {}) for _ in range(50)])

    before = await _received_before_marker(bus, listener, schema)
    assert before == [command_channel(schema, "payments")]


async def test_a_batch_over_two_domains_notifies_each_domain_once(
    bus: CommandBus, listener: AsyncConnection, schema: str
) -> None:
    await _listen(listener, schema, "payments", "shipping")
    requests = [
        SendRequest(domain, "T", uuid.uuid4(), {})
        for domain in ("payments", "shipping", "payments", "shipping")
    ]
    await bus.send_batch(requests)

    before = await _received_before_marker(bus, listener, schema)
    assert sorted(before) == sorted(command_channel(schema, d) for d in ("payments", "shipping"))


async def test_delayed_work_notifies_nobody(
    bus: CommandBus, listener: AsyncConnection, schema: str
) -> None:
    await _listen(listener, schema, "payments")
    await bus.send("payments", "Charge", uuid.uuid4(), {}, delay=60)
    await bus.send_batch(
        [SendRequest("payments", "Charge", uuid.uuid4(), {}, delay=5) for _ in range(10)]
    )

    assert await _received_before_marker(bus, listener, schema) == []


async def test_a_mixed_batch_notifies_only_the_domain_with_due_work(
    bus: CommandBus, listener: AsyncConnection, schema: str
) -> None:
    await _listen(listener, schema, "payments", "shipping")
    await bus.send_batch(
        [
            SendRequest("payments", "Charge", uuid.uuid4(), {}),
            SendRequest("shipping", "Ship", uuid.uuid4(), {}, delay=60),
        ]
    )

    assert await _received_before_marker(bus, listener, schema) == [
        command_channel(schema, "payments")
    ]


async def test_a_transactional_send_notifies_at_commit_and_not_after_rollback(
    bus: CommandBus, listener: AsyncConnection, schema: str, database_url: str
) -> None:
    await _listen(listener, schema, "payments")
    async with await AsyncConnection.connect(database_url) as conn:
        async with conn.transaction():
            await bus.send("payments", "Charge", uuid.uuid4(), {}, conn=conn)
            raise psycopg.Rollback
        assert await _received_before_marker(bus, listener, schema) == []

        async with conn.transaction():
            await bus.send("payments", "Charge", uuid.uuid4(), {}, conn=conn)
            assert await _received_before_marker(bus, listener, schema) == []
        assert await _received_before_marker(bus, listener, schema) == [
            command_channel(schema, "payments")
        ]


async def test_a_refused_duplicate_notifies_nobody(
    bus: CommandBus, listener: AsyncConnection, schema: str
) -> None:
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {}, delay=60)
    await _listen(listener, schema, "payments")
    with pytest.raises(DuplicateCommandError):
        await bus.send("payments", "Charge", command_id, {})

    assert await _received_before_marker(bus, listener, schema) == []


async def test_long_domain_names_get_a_channel_postgres_accepts(
    bus: CommandBus, listener: AsyncConnection, schema: str
) -> None:
    domain = "d" * 128
    channel = command_channel(schema, domain)
    assert len(channel.encode()) <= 63
    await _listen(listener, schema, domain)
    await bus.send(domain, "T", uuid.uuid4(), {})

    assert await _received_before_marker(bus, listener, schema) == [channel]
