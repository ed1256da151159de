"""Blocking twins of the testing helpers (issue #17 items 1, 2): inline mode for a
SyncCommandBus, with the app's own psycopg connection (the outbox) and plain-def
handlers that send through the sync bus; drain and wait_for_command on a SyncWorker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandStatus, HandlerRegistry, PermanentCommandError
from commandbus.models import Command
from commandbus.testing import CommandNotReachedError
from commandbus_sync import SyncCommandBus, SyncRuntime, SyncWorker
from commandbus_sync.testing import drain, inline, wait_for_command

DOMAIN = "orders"


@pytest.fixture
def conn(database_url: str, schema: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url) as c:
        c.execute(f"CREATE TABLE {schema}.shipped (order_id int)")
        c.commit()
        yield c


def registry_for(bus: SyncCommandBus) -> HandlerRegistry:
    registry = HandlerRegistry()
    schema = bus.bus.schema

    @registry.handler(DOMAIN, "Ship")
    def ship(command: Command, ctx: Any) -> dict[str, Any]:
        ctx.sync_conn.execute(
            f"INSERT INTO {schema}.shipped VALUES (%s)",
            [command.data["order"]],
        )
        return {"shipped": command.data["order"]}

    @registry.handler(DOMAIN, "Order")
    def order(command: Command, ctx: Any) -> None:
        bus.send(DOMAIN, "Ship", uuid.uuid4(), command.data)  # from the handler's thread

    @registry.handler(DOMAIN, "Broken")
    def broken(command: Command, ctx: Any) -> None:
        raise PermanentCommandError("NO_STOCK", "nothing left")

    return registry


def shipped(conn: psycopg.Connection[Any], schema: str) -> list[int]:
    rows = conn.execute(f"SELECT order_id FROM {schema}.shipped ORDER BY 1").fetchall()
    conn.commit()
    return [row[0] for row in rows]


def test_inline_runs_sends_on_the_bus_at_once_and_outbox_sends_on_drain(
    sync_bus: SyncCommandBus, conn: psycopg.Connection[Any], schema: str
) -> None:
    with inline(sync_bus, registry_for(sync_bus)) as runner:
        sync_bus.send(DOMAIN, "Order", uuid.uuid4(), {"order": 1})
        assert shipped(conn, schema) == [1]

        with conn.transaction():  # the app's own transaction (Django: atomic())
            sync_bus.send(DOMAIN, "Ship", uuid.uuid4(), {"order": 2}, conn=conn)
            assert runner.drain() == []  # not committed yet
        (done,) = runner.drain()
        assert (done.status, done.result) == (CommandStatus.COMPLETED, {"shipped": 2})
        assert shipped(conn, schema) == [1, 2]
    assert [o.command_type for o in runner.outcomes] == ["Order", "Ship", "Ship"]


def test_drain_and_wait_for_command_on_a_sync_worker(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, sync_bus: SyncCommandBus, schema: str
) -> None:
    registry = registry_for(sync_bus)
    worker = SyncWorker(
        pool=sync_pool, domain=DOMAIN, registry=registry, runtime=runtime, schema=schema
    )
    command_id = uuid.uuid4()
    sync_bus.send(DOMAIN, "Broken", command_id, {})
    (parked,) = drain(worker)
    assert parked.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE
    with pytest.raises(CommandNotReachedError, match="NO_STOCK"):
        wait_for_command(sync_bus, DOMAIN, command_id)
    found = wait_for_command(
        sync_bus, DOMAIN, command_id, status=CommandStatus.IN_TROUBLESHOOTING_QUEUE
    )
    assert found.last_error_code == "NO_STOCK"
    assert drain(registry, sync_bus) == []
