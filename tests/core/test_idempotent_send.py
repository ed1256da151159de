"""``(domain, command_id)`` is the idempotency key: a second send is refused and changes nothing."""

from __future__ import annotations

import asyncio
import uuid

import anyio
import pytest
from psycopg import AsyncConnection, sql

from commandbus import CommandBus, CommandBusError, DuplicateCommandError, SendResult
from core._tables import Tables, wait_for_lock_waiters


async def test_a_second_send_of_the_same_id_raises_and_changes_nothing(
    bus: CommandBus, tables: Tables
) -> None:
    command_id = uuid.uuid4()
    first = await bus.send("payments", "Charge", command_id, {"v": 1}, max_attempts=2)
    before = await bus.get_command("payments", command_id)

    with pytest.raises(DuplicateCommandError) as caught:
        await bus.send("payments", "Refund", command_id, {"v": 2}, max_attempts=9)

    err = caught.value
    assert isinstance(err, CommandBusError)
    assert (err.domain, err.command_id, err.command_ids) == ("payments", command_id, [command_id])
    assert str(command_id) in str(err) and "payments" in str(err)
    assert await bus.get_command("payments", command_id) == before
    assert await tables.rows("commands", command_id, columns="msg_id") == [(first.msg_id,)]
    assert await tables.count("audit", command_id) == 0


async def test_a_duplicate_is_refused_even_after_the_command_left_the_queue(
    bus: CommandBus, tables: Tables
) -> None:
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {})
    # As if a worker had completed it: the row is no longer deliverable (finish.sql).
    await tables.execute("UPDATE {schema}.commands SET status = 'COMPLETED', vt = NULL")

    with pytest.raises(DuplicateCommandError):
        await bus.send("payments", "Charge", command_id, {})
    # Not queued again either.
    assert await tables.rows("commands", columns="status, vt") == [("COMPLETED", None)]


async def test_twenty_concurrent_sends_of_one_id_have_exactly_one_winner(
    bus: CommandBus, tables: Tables, database_url: str, schema: str
) -> None:
    """The sends really race: a lock holds them all at the door, then lets them in at once."""
    command_id = uuid.uuid4()
    outcomes: list[SendResult | BaseException] = []

    async def send(n: int) -> None:
        try:
            outcomes.append(await bus.send("payments", "Charge", command_id, {"sender": n}))
        except DuplicateCommandError as exc:
            outcomes.append(exc)

    async with await AsyncConnection.connect(database_url) as gate:
        # SHARE mode conflicts with the ROW EXCLUSIVE lock every INSERT takes.
        await gate.execute(
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(schema, "commands"))
        )
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(send, n)
                await wait_for_lock_waiters(gate, schema, "commands", 20)
                await gate.rollback()  # open the door

    winners = [o for o in outcomes if isinstance(o, SendResult)]
    losers = [o for o in outcomes if isinstance(o, DuplicateCommandError)]
    assert len(winners) == 1 and len(losers) == 19
    assert all(err.command_ids == [command_id] for err in losers)
    assert await tables.rows("commands", command_id, columns="msg_id") == [(winners[0].msg_id,)]
    assert await tables.count("audit", command_id) == 0


async def test_twenty_concurrent_sends_from_separate_pool_connections(
    bus: CommandBus, tables: Tables
) -> None:
    """The same race without a gate, as applications produce it."""
    command_id = uuid.uuid4()
    results = await asyncio.gather(
        *(bus.send("payments", "Charge", command_id, {"sender": n}) for n in range(20)),
        return_exceptions=True,
    )

    assert sum(isinstance(r, SendResult) for r in results) == 1
    assert sum(isinstance(r, DuplicateCommandError) for r in results) == 19
    assert await tables.rows("commands", command_id, columns="status") == [("PENDING",)]
    assert await tables.count("audit", command_id) == 0
