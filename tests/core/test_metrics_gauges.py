"""The database gauges tell the truth: a domain that drained reports 0 (not nothing), a
paused domain says so, live and stale workers are counted per domain, the troubleshooting
queue is broken down by error group, and the pruner's backlog shows as an age."""

from __future__ import annotations

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
    _metrics_gauges,
    pause_domain,
    resume_domain,
)
from commandbus.hooks import HandlerFinished, HandlerStarted
from commandbus.metrics import DatabaseCollector, Metrics
from core._parking import park_many
from core.helpers import DOMAIN, execute, make_worker, running, wait_for_status, wait_until


def _scraper(database_url: str, schema: str, **options: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(database_url, schema=schema, **options))
    return registry


def _echo_registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Pay")
    async def pay(command: Command, ctx: HandlerContext) -> None:
        return None

    return registry


async def test_a_drained_domain_reports_zero_while_its_worker_runs(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, database_url: str
) -> None:
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Pay", command_id, {})
    async with running(make_worker(pool, schema, _echo_registry())) as worker:
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

        async def registered() -> bool:
            rows = await execute(pool, schema, "SELECT id FROM {schema}.workers")
            return [row[0] for row in rows] == [worker.name]

        await wait_until(registered, what="the worker's registration")
        # A fresh collector (a restarted exporter): it never saw the domain's commands.
        value = _scraper(database_url, schema).get_sample_value
        domain = {"domain": DOMAIN}
        for name in ("pending", "ready", "in_flight", "troubleshooting"):
            assert value(f"commandbus_{name}", domain) == 0, name
        assert value("commandbus_oldest_ready_age_seconds", domain) == 0
        assert value("commandbus_domain_paused", domain) == 0
        assert value("commandbus_workers", {"kind": "worker", **domain}) == 1


async def test_a_domain_once_seen_keeps_reporting_zero_after_it_drained(
    bus: CommandBus, schema: str, database_url: str
) -> None:
    command_id = uuid.uuid4()
    await bus.send("billing", "Invoice", command_id, {})
    scraper = _scraper(database_url, schema)
    assert scraper.get_sample_value("commandbus_ready", {"domain": "billing"}) == 1
    await bus.cancel("billing", command_id, operator="alice", reason="test")
    # No worker, no command left: still reported, as 0, by the collector that saw it.
    assert scraper.get_sample_value("commandbus_ready", {"domain": "billing"}) == 0
    assert scraper.get_sample_value("commandbus_pending", {"domain": "billing"}) == 0
    assert (
        scraper.get_sample_value("commandbus_workers", {"kind": "worker", "domain": "billing"}) == 0
    )


async def test_a_paused_domain_reports_paused_until_resumed(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, database_url: str
) -> None:
    await bus.send("billing", "Invoice", uuid.uuid4(), {})
    scraper = _scraper(database_url, schema)
    await pause_domain(pool, DOMAIN, operator="alice", reason="incident", schema=schema)
    # A paused domain with no command at all is reported too.
    assert scraper.get_sample_value("commandbus_domain_paused", {"domain": DOMAIN}) == 1
    assert scraper.get_sample_value("commandbus_ready", {"domain": DOMAIN}) == 0
    assert scraper.get_sample_value("commandbus_domain_paused", {"domain": "billing"}) == 0
    await resume_domain(pool, DOMAIN, schema=schema)
    assert scraper.get_sample_value("commandbus_domain_paused", {"domain": DOMAIN}) == 0


async def test_workers_are_counted_live_and_stale_by_kind_and_domain(
    pool: AsyncConnectionPool, schema: str, database_url: str
) -> None:
    """A row whose heartbeat is older than three intervals is a process killed hard."""
    rows = (
        ("w1", "worker", "payments", 0),
        ("w2", "worker", "payments", 31),
        ("w3", "worker", "shipping", 45),
        ("r1", "router", "replies", 1),
    )
    for member, kind, domain, age in rows:
        await execute(
            pool,
            schema,
            """
            INSERT INTO {schema}.workers (id, kind, host, pid, domain, concurrency, version,
                                          heartbeat_interval, heartbeat_at)
            VALUES (%s, %s, 'h', 1, %s, 1, '0.1.0', 10, now() - make_interval(secs => %s))
            """,
            [member, kind, domain, age],
        )
    value = _scraper(database_url, schema).get_sample_value

    def counts(kind: str, domain: str) -> tuple[float | None, float | None]:
        labels = {"kind": kind, "domain": domain}
        return value("commandbus_workers", labels), value("commandbus_workers_stale", labels)

    assert counts("worker", "payments") == (1, 1)
    assert counts("worker", "shipping") == (0, 1)
    assert counts("router", "replies") == (1, 0)
    # The registry's domains are domains: their gauges are reported (as 0 here).
    assert value("commandbus_ready", {"domain": "shipping"}) == 0


async def test_the_troubleshooting_queue_is_reported_by_error_group(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, database_url: str
) -> None:
    await park_many(bus, pool, schema, 3, domain="payments", error_type="KeyError", error_code=None)
    await park_many(bus, pool, schema, 2, domain="payments", error_code="DECLINED")
    await park_many(bus, pool, schema, 1, domain="shipping", command_type="Ship")
    value = _scraper(database_url, schema).get_sample_value

    def group(domain: str, command_type: str, error_type: str, code: str) -> float | None:
        labels = {"domain": domain, "command_type": command_type}
        labels.update(error_type=error_type, error_code=code)
        return value("commandbus_troubleshooting_by_error", labels)

    assert group("payments", "Pay", "KeyError", "") == 3
    assert group("payments", "Pay", "PermanentCommandError", "DECLINED") == 2
    assert group("shipping", "Ship", "PermanentCommandError", "BROKEN") == 1
    assert value("commandbus_troubleshooting", {"domain": "payments"}) == 5
    assert value("commandbus_troubleshooting", {"domain": "shipping"}) == 1
    # Capped to the largest groups; the per-domain totals still count every command.
    capped = _scraper(database_url, schema, max_error_groups=1).get_sample_value
    assert capped("commandbus_troubleshooting_by_error", {**_labels("KeyError", "")}) == 3
    assert (
        capped("commandbus_troubleshooting_by_error", _labels("PermanentCommandError", "DECLINED"))
        is None
    )
    assert capped("commandbus_troubleshooting", {"domain": "payments"}) == 5


def _labels(error_type: str, code: str) -> dict[str, str]:
    return {
        "domain": "payments",
        "command_type": "Pay",
        "error_type": error_type,
        "error_code": code,
    }


async def test_the_oldest_finished_age_shows_what_the_pruner_has_left(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, database_url: str
) -> None:
    scraper = _scraper(database_url, schema)
    assert scraper.get_sample_value("commandbus_oldest_finished_age_seconds") == 0
    old, new, running_process = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for command_id in (old, new):
        await bus.send(DOMAIN, "Pay", command_id, {})
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET status = 'COMPLETED', vt = NULL,"
        " updated_at = now() - make_interval(hours => %s) WHERE command_id = %s",
        [2, old],
    )
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET status = 'COMPLETED', vt = NULL WHERE command_id = %s",
        [new],
    )
    age = scraper.get_sample_value("commandbus_oldest_finished_age_seconds")
    assert age is not None and 7200 <= age < 7300
    # A command of a process that still exists is not the pruner's to delete yet.
    await execute(
        pool,
        schema,
        "INSERT INTO {schema}.processes (process_id, domain, process_type, status, state)"
        " VALUES (%s, %s, 'Saga', 'WAITING_FOR_REPLY', '{{}}')",
        [running_process, DOMAIN],
    )
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET correlation_id = %s WHERE command_id = %s",
        [running_process, old],
    )
    age = scraper.get_sample_value("commandbus_oldest_finished_age_seconds")
    assert age is not None and age < 60


def test_an_operator_cancel_is_counted_as_canceled() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics(HandlerFinished(DOMAIN, "Pay", uuid.uuid4(), 1, "w", "OPERATOR_CANCEL", 0.1))
    labels = {"domain": DOMAIN, "command_type": "Pay", "outcome": "canceled"}
    assert metrics.registry.get_sample_value("commandbus_commands_handled_total", labels) == 1


def test_a_command_types_outcome_counters_start_at_zero() -> None:
    """A failure counter that appears already at 1 is no increase to rate(): start at 0."""
    metrics = Metrics(CollectorRegistry())
    metrics(HandlerStarted(DOMAIN, "Pay", uuid.uuid4(), 1, "w", 0.01))
    labels = {"domain": DOMAIN, "command_type": "Pay"}
    value = metrics.registry.get_sample_value
    for outcome in ("completed", "failed", "retried", "parked", "canceled"):
        assert value("commandbus_commands_handled_total", {**labels, "outcome": outcome}) == 0
    assert value("commandbus_commands_parked_total", labels) == 0


async def test_a_slow_reading_of_the_troubleshooting_queue_is_reused_for_a_while(
    pool: AsyncConnectionPool,
    bus: CommandBus,
    schema: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It reads every parked row: reused until REUSE_FACTOR times as old as it took."""
    await park_many(bus, pool, schema, 2, domain="payments")
    scraper = _scraper(database_url, schema)
    monkeypatch.setattr(_metrics_gauges, "REUSE_FACTOR", 1e9)  # as if it took an age
    assert scraper.get_sample_value("commandbus_troubleshooting", {"domain": "payments"}) == 2
    await park_many(bus, pool, schema, 3, domain="payments")
    assert scraper.get_sample_value("commandbus_troubleshooting", {"domain": "payments"}) == 2
    # The backlog gauges are read at every scrape all the same.
    await bus.send("payments", "Pay", uuid.uuid4(), {})
    assert scraper.get_sample_value("commandbus_ready", {"domain": "payments"}) == 1
    monkeypatch.setattr(_metrics_gauges, "REUSE_FACTOR", 1.0)  # a quick reading: read again
    scraper = _scraper(database_url, schema)
    assert scraper.get_sample_value("commandbus_troubleshooting", {"domain": "payments"}) == 5
