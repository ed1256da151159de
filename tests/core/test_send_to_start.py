"""Send-to-start latency (``HandlerStarted.waited``, ``commandbus_send_to_start_seconds``)
counts from when a command last became deliverable: not the hour it sat parked before an
operator's retry, nor a scheduled delay, nor a retry's backoff; an expired lease counts
from its expiry."""

from __future__ import annotations

import time
import uuid

import pytest
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    PermanentCommandError,
    TroubleshootingQueue,
)
from commandbus._engine.fetcher import Fetcher
from commandbus._observe import started_event
from commandbus.hooks import HandlerStarted
from commandbus.metrics import Metrics
from core.helpers import DOMAIN, execute, make_worker, running, wait_for_status, wait_until

HOUR = 3600.0


async def _age(
    pool: AsyncConnectionPool, schema: str, command_id: uuid.UUID, assignments: str
) -> None:
    """Move a command's timestamps into the past, as if time had passed (no sleeping)."""
    statement = f"UPDATE {{schema}}.commands SET {assignments} WHERE command_id = %s"
    await execute(pool, schema, statement, [command_id])


async def test_an_operator_retry_counts_from_the_retry_not_from_the_send(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    started: list[HandlerStarted] = []
    metrics = Metrics(CollectorRegistry())
    registry = HandlerRegistry()
    broken = [True]

    @registry.handler(DOMAIN, "Pay")
    async def pay(command: Command, ctx: HandlerContext) -> None:
        if broken[0]:
            raise PermanentCommandError("BROKEN", "no")

    def hook(event: object) -> None:
        if isinstance(event, HandlerStarted):
            started.append(event)

    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Pay", command_id, {})
    async with running(make_worker(pool, schema, registry, hooks=[hook, metrics])):
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
        # Sent an hour ago, parked ever since: then an operator retries it.
        await _age(pool, schema, command_id, "created_at = now() - interval '1 hour'")
        broken[0] = False
        await TroubleshootingQueue(pool, schema=schema).operator_retry(
            DOMAIN, command_id, operator="alice", reason="fixed"
        )
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert len(started) == 2
    assert started[1].waited < 60, started[1]
    # No observation in the histogram's hour-long buckets: both starts were quick.
    value = metrics.registry.get_sample_value
    kind = {"domain": DOMAIN, "command_type": "Pay"}
    assert value("commandbus_send_to_start_seconds_bucket", {**kind, "le": "60.0"}) == 2


@pytest.mark.parametrize("limited", [False, True], ids=["dequeue", "dequeue-with-limits"])
async def test_a_lease_knows_how_long_its_command_was_deliverable(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, limited: bool
) -> None:
    """Sent an hour ago with a delay that ran out 5 s ago: it waited 5 s, not an hour."""
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Pay", command_id, {}, delay=HOUR)
    await _age(
        pool,
        schema,
        command_id,
        "created_at = now() - interval '1 hour', vt = now() - interval '5 seconds'",
    )
    fetcher = _fetcher(pool, schema, {"Pay": 3} if limited else {})
    leased_at = time.monotonic()
    (lease,), _expired = await fetcher.lease("dequeue", 10, alone=True)
    assert lease.ready_since is not None
    assert 4.0 < leased_at - lease.ready_since < 30.0


async def test_a_rescued_lease_counts_from_the_expiry_of_the_lease_before(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Pay", command_id, {})
    fetcher = _fetcher(pool, schema, {})
    (_first,), _ = await fetcher.lease("dequeue", 1, alone=True)
    # Its worker died: the lease ran out 5 s ago (the command was sent an hour ago).
    await _age(
        pool,
        schema,
        command_id,
        "created_at = now() - interval '1 hour', vt = now() - interval '5 seconds'",
    )
    rescued_at = time.monotonic()
    (lease,), _ = await fetcher.lease("rescue", 1, alone=True)
    assert lease.command.command_id == command_id and lease.attempt == 2
    assert lease.ready_since is not None
    assert 4.0 < rescued_at - lease.ready_since < 30.0


async def test_time_held_by_the_worker_after_the_lease_counts_too(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    """A command leased ahead of a free slot waits in the worker: that is latency."""
    await bus.send(DOMAIN, "Pay", uuid.uuid4(), {})
    (lease,), _ = await _fetcher(pool, schema, {}).lease("dequeue", 1, alone=True)
    assert lease.ready_since is not None
    moment = lease.ready_since + 0.2

    async def later() -> bool:
        return time.monotonic() >= moment

    await wait_until(later, timeout=5, what="0.2 s after the lease")
    assert started_event(lease, "w").waited >= 0.2


def _fetcher(pool: AsyncConnectionPool, schema: str, limits: dict[str, int]) -> Fetcher:
    return Fetcher(
        pool,
        schema=schema,
        domain=DOMAIN,
        worker="test-worker",
        visibility_timeout=30.0,
        max_running=lambda: limits,
    )
