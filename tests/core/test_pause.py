"""Pausing a domain: a running worker starts none of its commands while it is paused
(other domains go on), resuming wakes the workers at once, and the pause is listed."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    CommandBus,
    CommandStatus,
    HandlerRegistry,
    ValidationError,
    Worker,
    list_paused,
    pause_domain,
    resume_domain,
)
from core.helpers import DOMAIN, make_worker, running, wait_for_status, wait_until

pytestmark = pytest.mark.anyio


def _registry(ran: list[uuid.UUID], domain: str = DOMAIN) -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler(domain, "Work")
    async def work(command: Any, ctx: Any) -> None:
        ran.append(command.command_id)

    return registry


def _count_dequeues(worker: Worker) -> list[int]:
    """Count the worker's dequeue statements (each one checks the pause)."""
    calls = [0]
    original = worker._fetcher.lease

    async def counted(statement: str, limit: int, *, alone: bool) -> Any:
        result = await original(statement, limit, alone=alone)
        calls[0] += statement == "dequeue"
        return result

    worker._fetcher.lease = counted  # type: ignore[method-assign]
    return calls


async def test_a_paused_domain_starts_nothing_until_resumed(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[uuid.UUID] = []
    worker = make_worker(pool, schema, _registry(ran), poll_interval=0.05)
    calls = _count_dequeues(worker)
    caplog.set_level(logging.INFO, logger="commandbus.domains")
    async with running(worker):
        await pause_domain(pool, DOMAIN, operator="alice", reason="incident 42", schema=schema)
        ids = [uuid.uuid4() for _ in range(5)]
        for command_id in ids:
            await bus.send(DOMAIN, "Work", command_id, {})
        seen = calls[0]

        async def polled_thrice() -> bool:
            return calls[0] >= seen + 3

        await wait_until(polled_thrice, what="three dequeues while paused")
        assert ran == []
        for command_id in ids:
            command = await bus.get_command(DOMAIN, command_id)
            assert command is not None and command.status == CommandStatus.PENDING
        assert await resume_domain(pool, DOMAIN, operator="alice", schema=schema)
        for command_id in ids:
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert sorted(ran) == sorted(ids)
    messages = [r.getMessage() for r in caplog.records if r.name == "commandbus.domains"]
    assert messages == [
        f"domain {DOMAIN} paused by alice: incident 42",
        f"domain {DOMAIN} resumed by alice",
    ]


async def test_resume_wakes_workers_without_waiting_for_their_poll(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    ran: list[uuid.UUID] = []
    await pause_domain(pool, DOMAIN, schema=schema)
    worker = make_worker(pool, schema, _registry(ran), poll_interval=60)
    calls = _count_dequeues(worker)
    async with running(worker):

        async def started() -> bool:
            return calls[0] >= 1

        await wait_until(started, what="the first dequeue")
        command_id = uuid.uuid4()
        await bus.send(DOMAIN, "Work", command_id, {})  # its NOTIFY: one dequeue, paused

        async def dequeued() -> bool:
            return calls[0] >= 2  # the first at start, the second woken by the send

        await wait_until(dequeued, what="the send's wake-up")
        await resume_domain(pool, DOMAIN, schema=schema)
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED, timeout=10)


async def test_other_domains_go_on_and_the_pause_is_listed(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    ran: list[uuid.UUID] = []
    paused = await pause_domain(
        pool, "billing", operator="bob", reason="db failover", schema=schema
    )
    again = await pause_domain(pool, "billing", operator="carol", reason="still", schema=schema)
    assert again.paused_at == paused.paused_at and again.operator == "carol"
    (listed,) = await list_paused(pool, schema=schema)
    assert (listed.domain, listed.operator, listed.reason) == ("billing", "carol", "still")
    async with running(make_worker(pool, schema, _registry(ran))):
        command_id = uuid.uuid4()
        await bus.send(DOMAIN, "Work", command_id, {})
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert await resume_domain(pool, "billing", schema=schema)
    assert not await resume_domain(pool, "billing", schema=schema)
    assert await list_paused(pool, schema=schema) == []


async def test_an_expired_lease_waits_for_the_resume_too(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, tables: Any
) -> None:
    ran: list[uuid.UUID] = []
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Work", command_id, {})
    # A worker that died holding the lease: IN_PROGRESS, lease expired.
    await tables.execute(
        "UPDATE {schema}.commands SET status = 'IN_PROGRESS', attempts = 1, "
        "vt = now() - interval '1 minute', lease_id = 1, worker = 'gone', "
        "leased_at = now() - interval '2 minutes' "
        "WHERE command_id = %s",
        [command_id],
    )
    await pause_domain(pool, DOMAIN, schema=schema)
    worker = make_worker(pool, schema, _registry(ran))
    calls = _count_dequeues(worker)
    async with running(worker):

        async def polled() -> bool:
            return calls[0] >= 3

        await wait_until(polled, what="dequeues while paused")
        assert worker.stats["rescued"] == 0 and ran == []
        # Paused, the worker polls at its interval: it does not spin on the expired lease.
        assert calls[0] < 100
        await resume_domain(pool, DOMAIN, schema=schema)
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert worker.stats["rescued"] == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"domain": "no spaces"}, "domain"),
        ({"reason": 42}, "reason"),
        ({"operator": b"bytes"}, "operator"),
        ({"reason": "x" * 4097}, "reason"),
        ({"reason": "a\ud800b"}, "reason"),  # a lone surrogate: not UTF-8, not storable
        ({"operator": "a\udcffb"}, "operator"),  # what os.fsdecode makes of a byte 0xff
        ({"reason": "nul\x00"}, "reason"),
        ({"operator": "  "}, "operator"),
    ],
)
async def test_bad_pause_input_names_the_argument(
    pool: AsyncConnectionPool, schema: str, kwargs: dict[str, Any], field: str
) -> None:
    kwargs = {"domain": DOMAIN, **kwargs}
    domain = kwargs.pop("domain")
    with pytest.raises(ValidationError) as caught:
        await pause_domain(pool, domain, schema=schema, **kwargs)
    assert caught.value.field == field
    assert await list_paused(pool, schema=schema) == []
