"""``query_commands``: filters that combine, paging, newest first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from commandbus import CommandBus, CommandMetadata, CommandStatus, SendRequest
from core._tables import Tables

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _ids(commands: list[CommandMetadata]) -> list[uuid.UUID]:
    return [c.command_id for c in commands]


async def _send_at(
    bus: CommandBus,
    tables: Tables,
    minutes: int,
    *,
    domain: str = "payments",
    command_type: str = "Charge",
    status: CommandStatus = CommandStatus.PENDING,
) -> uuid.UUID:
    """Send a command, then pin its creation time to ``T0 + minutes`` and its status."""
    command_id = uuid.uuid4()
    await bus.send(domain, command_type, command_id, {"minutes": minutes})
    await tables.execute(
        "UPDATE {schema}.commands SET created_at = %s, status = %s "
        "WHERE domain = %s AND command_id = %s",
        [T0 + timedelta(minutes=minutes), status.value, domain, command_id],
    )
    return command_id


async def test_without_filters_every_command_comes_newest_first(bus: CommandBus) -> None:
    sent = [uuid.uuid4() for _ in range(5)]
    for command_id in sent:  # one transaction each: strictly increasing created_at
        await bus.send("payments", "Charge", command_id, {})

    found = await bus.query_commands()

    assert _ids(found) == sent[::-1]
    assert all(isinstance(c, CommandMetadata) for c in found)
    assert found[0].created_at > found[-1].created_at


async def test_filter_by_domain(bus: CommandBus, tables: Tables) -> None:
    pay = await _send_at(bus, tables, 1, domain="payments")
    await _send_at(bus, tables, 2, domain="shipping")

    assert _ids(await bus.query_commands(domain="payments")) == [pay]
    assert await bus.query_commands(domain="nowhere") == []


async def test_filter_by_command_type(bus: CommandBus, tables: Tables) -> None:
    refund = await _send_at(bus, tables, 1, command_type="Refund")
    await _send_at(bus, tables, 2, command_type="Charge")

    assert _ids(await bus.query_commands(command_type="Refund")) == [refund]


@pytest.mark.anyio  # the conftest marks async tests too late for parametrize
@pytest.mark.parametrize("as_enum", [True, False], ids=["enum", "string"])
async def test_filter_by_status_as_enum_or_string(
    bus: CommandBus, tables: Tables, as_enum: bool
) -> None:
    done = await _send_at(bus, tables, 1, status=CommandStatus.COMPLETED)
    parked = await _send_at(bus, tables, 2, status=CommandStatus.IN_TROUBLESHOOTING_QUEUE)
    pending = await _send_at(bus, tables, 3)

    def status(s: CommandStatus) -> CommandStatus | str:
        return s if as_enum else s.value

    assert _ids(await bus.query_commands(status=status(CommandStatus.COMPLETED))) == [done]
    parked_found = await bus.query_commands(status=status(CommandStatus.IN_TROUBLESHOOTING_QUEUE))
    assert _ids(parked_found) == [parked]
    assert parked_found[0].status is CommandStatus.IN_TROUBLESHOOTING_QUEUE
    assert _ids(await bus.query_commands(status=status(CommandStatus.PENDING))) == [pending]
    assert await bus.query_commands(status=status(CommandStatus.CANCELED)) == []


async def test_created_after_and_before_are_exclusive_bounds(
    bus: CommandBus, tables: Tables
) -> None:
    at = {m: await _send_at(bus, tables, m) for m in (0, 10, 20, 30)}

    after = await bus.query_commands(created_after=T0 + timedelta(minutes=10))
    assert _ids(after) == [at[30], at[20]]
    before = await bus.query_commands(created_before=T0 + timedelta(minutes=20))
    assert _ids(before) == [at[10], at[0]]
    window = await bus.query_commands(
        created_after=T0 + timedelta(minutes=5), created_before=T0 + timedelta(minutes=25)
    )
    assert _ids(window) == [at[20], at[10]]


async def test_filters_combine(bus: CommandBus, tables: Tables) -> None:
    match = await _send_at(
        bus, tables, 10, domain="payments", command_type="Refund", status=CommandStatus.FAILED
    )
    await _send_at(bus, tables, 11, domain="shipping", command_type="Refund")
    await _send_at(bus, tables, 12, domain="payments", command_type="Charge")
    await _send_at(bus, tables, 13, domain="payments", command_type="Refund")
    await _send_at(
        bus, tables, 1, domain="payments", command_type="Refund", status=CommandStatus.FAILED
    )

    found = await bus.query_commands(
        domain="payments",
        command_type="Refund",
        status=CommandStatus.FAILED,
        created_after=T0 + timedelta(minutes=5),
    )
    assert _ids(found) == [match]


async def test_paging_walks_the_list_newest_first_without_gaps_or_overlaps(
    bus: CommandBus, tables: Tables
) -> None:
    sent = [await _send_at(bus, tables, m) for m in range(7)]
    newest_first = sent[::-1]

    pages = [await bus.query_commands(limit=3, offset=offset) for offset in (0, 3, 6, 9)]

    assert [_ids(p) for p in pages] == [newest_first[:3], newest_first[3:6], newest_first[6:], []]


async def test_the_default_limit_is_one_hundred_and_ties_page_stably(bus: CommandBus) -> None:
    """A batch shares one created_at: paging must still neither repeat nor skip."""
    requests = [SendRequest("payments", "Charge", uuid.uuid4(), {}) for _ in range(105)]
    await bus.send_batch(requests)

    first, rest = await bus.query_commands(), await bus.query_commands(offset=100)

    assert (len(first), len(rest)) == (100, 5)
    assert set(_ids(first)).isdisjoint(_ids(rest))
    assert set(_ids(first)) | set(_ids(rest)) == {r.command_id for r in requests}
    assert _ids(await bus.query_commands(limit=200)) == _ids(first) + _ids(rest)
