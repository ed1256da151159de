"""Sending one command and reading it back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, CommandMetadata, CommandStatus, SendResult, migrate
from core._tables import Tables


async def test_send_then_get_command_round_trips_every_field(bus: CommandBus) -> None:
    command_id, correlation_id = uuid.uuid4(), uuid.uuid4()
    data = {"amount": 12.5, "items": [1, "two", None], "nested": {"ok": True}, "text": "żółw €"}
    before = datetime.now(UTC)

    result = await bus.send(
        "payments",
        "Charge",
        command_id,
        data,
        correlation_id=correlation_id,
        reply_to="payments.replies",
        max_attempts=7,
    )

    assert isinstance(result, SendResult)
    assert result.command_id == command_id
    assert isinstance(result.msg_id, int)
    cmd = await bus.get_command("payments", command_id)
    assert isinstance(cmd, CommandMetadata)
    assert (cmd.domain, cmd.command_id, cmd.command_type) == ("payments", command_id, "Charge")
    assert cmd.status is CommandStatus.PENDING
    assert (cmd.attempts, cmd.max_attempts) == (0, 7)
    assert cmd.data == data
    assert cmd.correlation_id == correlation_id
    assert cmd.reply_to == "payments.replies"
    assert cmd.batch_id is None
    assert cmd.result is None
    assert (cmd.last_error_type, cmd.last_error_code, cmd.last_error_message) == (None,) * 3
    assert cmd.created_at.tzinfo is not None
    assert before - timedelta(seconds=5) < cmd.created_at < datetime.now(UTC) + timedelta(seconds=5)
    assert cmd.updated_at == cmd.created_at


async def test_optional_fields_default_to_none_and_the_bus_default_max_attempts(
    bus: CommandBus, schema: str
) -> None:
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {})

    cmd = await bus.get_command("payments", command_id)
    assert cmd is not None
    assert cmd.data == {}
    assert (cmd.correlation_id, cmd.reply_to) == (None, None)
    assert cmd.max_attempts == 3

    other = CommandBus(bus.pool, schema=schema, default_max_attempts=9)
    second = uuid.uuid4()
    await other.send("payments", "Charge", second, {})
    cmd = await other.get_command("payments", second)
    assert cmd is not None and cmd.max_attempts == 9


async def test_send_enqueues_exactly_one_deliverable_message(
    bus: CommandBus, tables: Tables
) -> None:
    command_id = uuid.uuid4()
    result = await bus.send("payments", "Charge", command_id, {"n": 1})

    rows = await tables.rows(
        "queue", command_id, columns="msg_id, domain, read_ct, vt <= now(), vt = enqueued_at"
    )
    assert rows == [(result.msg_id, "payments", 0, True, True)]


async def test_each_send_gets_its_own_increasing_msg_id(bus: CommandBus) -> None:
    results = [await bus.send("payments", "Charge", uuid.uuid4(), {}) for _ in range(3)]
    msg_ids = [r.msg_id for r in results]
    assert msg_ids == sorted(set(msg_ids))


async def test_get_command_of_an_unknown_id_is_none(bus: CommandBus) -> None:
    await bus.send("payments", "Charge", known := uuid.uuid4(), {})
    assert await bus.get_command("payments", uuid.uuid4()) is None
    assert await bus.get_command("shipping", known) is None


async def test_the_same_command_id_in_two_domains_is_two_commands(bus: CommandBus) -> None:
    command_id = uuid.uuid4()
    first = await bus.send("payments", "Charge", command_id, {"d": "payments"})
    second = await bus.send("shipping", "Ship", command_id, {"d": "shipping"})

    assert first.msg_id != second.msg_id
    payments = await bus.get_command("payments", command_id)
    shipping = await bus.get_command("shipping", command_id)
    assert payments is not None and payments.data == {"d": "payments"}
    assert shipping is not None and shipping.command_type == "Ship"


async def test_names_at_the_edges_of_the_allowed_alphabet_and_length_are_accepted(
    bus: CommandBus,
) -> None:
    domain = "A-z_0.9" + "x" * 121  # 128 characters
    command_id = uuid.uuid4()
    await bus.send(domain, "v1.Order-Placed_2", command_id, {}, reply_to="r" * 128)

    cmd = await bus.get_command(domain, command_id)
    assert cmd is not None
    assert (cmd.command_type, cmd.reply_to) == ("v1.Order-Placed_2", "r" * 128)


async def test_a_bus_only_sees_its_own_schema(
    bus: CommandBus, database_url: str, schema: str
) -> None:
    other_schema = f"{schema}_other"
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {})
    async with AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False) as pool:
        try:
            await migrate(pool, schema=other_schema)
            other = CommandBus(pool, schema=other_schema)
            assert await other.get_command("payments", command_id) is None
            await other.send("payments", "Charge", command_id, {})  # no duplicate across schemas
        finally:
            async with pool.connection() as conn:
                await conn.execute(
                    sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(other_schema))
                )
