"""``send_batch``: many commands in one transaction, all or nothing."""

from __future__ import annotations

import uuid

import pytest

from commandbus import CommandBus, DuplicateCommandError, SendRequest, SendResult, ValidationError
from core._tables import Tables


def _requests(n: int, domain: str = "payments") -> list[SendRequest]:
    return [SendRequest(domain, "Charge", uuid.uuid4(), {"n": i}) for i in range(n)]


async def test_results_come_back_in_request_order_and_every_command_is_stored(
    bus: CommandBus, tables: Tables
) -> None:
    requests = _requests(50)
    results = await bus.send_batch(requests)

    assert all(isinstance(r, SendResult) for r in results)
    assert [r.command_id for r in results] == [r.command_id for r in requests]
    assert len({r.msg_id for r in results}) == 50
    for request, result in zip(requests, results, strict=True):
        cmd = await bus.get_command("payments", request.command_id)
        assert cmd is not None and cmd.data == request.data
        assert await tables.rows("commands", request.command_id, columns="msg_id, status") == [
            (result.msg_id, "PENDING")
        ]
    assert await tables.counts() == {"commands": 50, "audit": 0}


async def test_a_batch_is_written_in_one_transaction(bus: CommandBus, tables: Tables) -> None:
    await bus.send_batch(_requests(20))
    # now() is the transaction's start time: one transaction, one timestamp.
    rows = await tables.rows("commands", columns="DISTINCT created_at")
    assert len(rows) == 1


async def test_every_field_of_a_request_is_honoured(bus: CommandBus) -> None:
    correlation_id = uuid.uuid4()
    request = SendRequest(
        "payments",
        "Refund",
        uuid.uuid4(),
        {"x": [1, 2]},
        correlation_id=correlation_id,
        reply_to="replies",
        max_attempts=5,
    )
    await bus.send_batch([request, *_requests(2)])

    cmd = await bus.get_command("payments", request.command_id)
    assert cmd is not None
    assert (cmd.command_type, cmd.data, cmd.correlation_id, cmd.reply_to, cmd.max_attempts) == (
        "Refund",
        {"x": [1, 2]},
        correlation_id,
        "replies",
        5,
    )


async def test_one_duplicate_rejects_the_whole_batch_and_names_it(
    bus: CommandBus, tables: Tables
) -> None:
    taken = uuid.uuid4()
    await bus.send("payments", "Charge", taken, {})
    requests = _requests(3)
    requests.insert(2, SendRequest("payments", "Charge", taken, {}))

    with pytest.raises(DuplicateCommandError) as caught:
        await bus.send_batch(requests)

    assert caught.value.command_ids == [taken]
    assert caught.value.domain == "payments"
    assert str(taken) in str(caught.value)
    assert await tables.counts() == {"commands": 1, "audit": 0}
    for request in requests:
        if request.command_id != taken:
            assert await bus.get_command("payments", request.command_id) is None


async def test_every_offending_id_is_named(bus: CommandBus, tables: Tables) -> None:
    taken = _requests(3)
    await bus.send_batch(taken)
    fresh = _requests(4)
    batch = [fresh[0], taken[2], fresh[1], taken[0], fresh[2]]

    with pytest.raises(DuplicateCommandError) as caught:
        await bus.send_batch(batch)

    assert sorted(caught.value.command_ids) == sorted([taken[2].command_id, taken[0].command_id])
    assert await tables.counts() == {"commands": 3, "audit": 0}


async def test_a_rejected_batch_can_be_resent_without_the_duplicates(bus: CommandBus) -> None:
    taken = _requests(1)
    await bus.send_batch(taken)
    fresh = _requests(3)

    with pytest.raises(DuplicateCommandError):
        await bus.send_batch([*fresh, *taken])
    results = await bus.send_batch(fresh)

    assert [r.command_id for r in results] == [r.command_id for r in fresh]


async def test_the_same_id_twice_in_one_batch_is_a_duplicate(
    bus: CommandBus, tables: Tables
) -> None:
    twice = uuid.uuid4()
    requests = [
        *_requests(2),
        SendRequest("payments", "Charge", twice, {"copy": 1}),
        SendRequest("payments", "Charge", twice, {"copy": 2}),
    ]

    with pytest.raises(DuplicateCommandError) as caught:
        await bus.send_batch(requests)

    assert caught.value.command_ids == [twice]
    assert await tables.counts() == {"commands": 0, "audit": 0}


async def test_the_same_id_in_two_domains_of_one_batch_is_fine(bus: CommandBus) -> None:
    shared = uuid.uuid4()
    await bus.send_batch(
        [
            SendRequest("payments", "Charge", shared, {}),
            SendRequest("shipping", "Ship", shared, {}),
        ]
    )

    assert await bus.get_command("payments", shared) is not None
    assert await bus.get_command("shipping", shared) is not None


async def test_an_invalid_request_rejects_the_whole_batch(bus: CommandBus, tables: Tables) -> None:
    requests = _requests(3)
    requests.insert(1, SendRequest("payments", "Charge", uuid.uuid4(), {"bad": {1, 2}}))

    with pytest.raises(ValidationError) as caught:
        await bus.send_batch(requests)

    assert caught.value.field == "data"
    assert await tables.counts() == {"commands": 0, "audit": 0}


async def test_an_empty_batch_is_refused(bus: CommandBus) -> None:
    with pytest.raises(ValidationError) as caught:
        await bus.send_batch([])
    assert caught.value.field == "requests"


async def test_something_other_than_a_send_request_is_refused_by_position(
    bus: CommandBus, tables: Tables
) -> None:
    bad: list[object] = [*_requests(1), ("payments", "Charge", uuid.uuid4(), {})]

    with pytest.raises(ValidationError) as caught:
        await bus.send_batch(bad)  # type: ignore[arg-type]

    assert caught.value.field == "requests[1]"
    assert await tables.counts() == {"commands": 0, "audit": 0}


async def test_a_large_batch_goes_through(bus: CommandBus, tables: Tables) -> None:
    results = await bus.send_batch(_requests(2_000))
    assert len(results) == 2_000
    assert await tables.counts() == {"commands": 2_000, "audit": 0}
