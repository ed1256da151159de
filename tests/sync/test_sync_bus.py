"""SyncCommandBus on a real database: same results and exceptions as CommandBus."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    CommandBus,
    CommandStatus,
    DuplicateCommandError,
    SendRequest,
    ValidationError,
    migrate,
)
from commandbus.models import BatchCommand
from commandbus_sync import SyncCommandBus, SyncRuntime


def test_send_then_read_back(sync_bus: SyncCommandBus) -> None:
    cid = uuid.uuid4()
    result = sync_bus.send("orders", "Ship", cid, {"n": 1}, max_attempts=5)
    assert result.command_id == cid
    meta = sync_bus.get_command("orders", cid)
    assert meta is not None
    assert meta.status is CommandStatus.PENDING
    assert meta.max_attempts == 5
    assert [m.command_id for m in sync_bus.query_commands(domain="orders")] == [cid]
    assert [e.event_type for e in sync_bus.get_audit_trail(cid)] == ["SENT"]


def test_duplicate_command_error_surfaces_unchanged(sync_bus: SyncCommandBus) -> None:
    cid = uuid.uuid4()
    sync_bus.send("orders", "Ship", cid, {})
    with pytest.raises(DuplicateCommandError) as caught:
        sync_bus.send("orders", "Ship", cid, {})
    assert type(caught.value) is DuplicateCommandError
    assert caught.value.domain == "orders"
    assert caught.value.command_ids == [cid]


def test_validation_error_surfaces_unchanged(sync_bus: SyncCommandBus) -> None:
    with pytest.raises(ValidationError) as caught:
        sync_bus.send("orders", "Ship", "not-a-uuid", {})  # type: ignore[arg-type]
    assert caught.value.field == "command_id"


def test_send_batch_is_all_or_nothing(sync_bus: SyncCommandBus) -> None:
    existing = uuid.uuid4()
    sync_bus.send("orders", "Ship", existing, {})
    fresh = uuid.uuid4()
    with pytest.raises(DuplicateCommandError):
        sync_bus.send_batch(
            [SendRequest("orders", "Ship", fresh, {}), SendRequest("orders", "Ship", existing, {})]
        )
    assert sync_bus.get_command("orders", fresh) is None


def test_batches_through_the_facade(sync_bus: SyncCommandBus) -> None:
    cids = [uuid.uuid4(), uuid.uuid4()]
    result = sync_bus.create_batch(
        "orders", [BatchCommand("Ship", c, {}) for c in cids], name="nightly"
    )
    info = sync_bus.get_batch("orders", result.batch_id)
    assert info is not None
    assert info.total == 2
    assert [b.batch_id for b in sync_bus.list_batches("orders")] == [result.batch_id]
    listed = sync_bus.list_batch_commands("orders", result.batch_id)
    assert sorted(m.command_id for m in listed) == sorted(cids)


def test_built_from_a_command_bus(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> None:
    bus = CommandBus(sync_pool, schema=schema)
    sync = SyncCommandBus(bus, runtime=runtime)
    assert sync.bus is bus
    sync.send("orders", "Ship", uuid.uuid4(), {})


def test_built_from_conninfo_owns_and_closes_its_pool(
    runtime: SyncRuntime, database_url: str, schema: str
) -> None:
    with SyncCommandBus(
        conninfo=database_url, runtime=runtime, schema=schema, pool_kwargs={"min_size": 1}
    ) as sync:
        runtime.run(migrate, sync.bus.pool, schema=schema)
        sync.send("orders", "Ship", uuid.uuid4(), {})
    assert sync.bus.pool.closed


def test_uses_the_default_runtime_when_none_is_given(
    database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from commandbus_sync import runtime as rt_module

    with SyncRuntime() as rt:
        monkeypatch.setattr(rt_module, "_default", rt)
        sync = SyncCommandBus(conninfo=database_url, schema=schema, pool_kwargs={"min_size": 1})
        assert sync.runtime is rt


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "bus"),
        ({"pool": "p", "conninfo": "c"}, "bus"),
        ({"conninfo": "postgresql://x", "pool_kwargs": {}, "pool": "p"}, "bus"),
        ({"pool_kwargs": {"min_size": 1}, "pool": "p"}, "pool_kwargs"),
    ],
)
def test_constructor_rejects_ambiguous_arguments(
    runtime: SyncRuntime, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SyncCommandBus(runtime=runtime, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_settings_cannot_be_given_alongside_a_built_bus(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool
) -> None:
    with pytest.raises(ValidationError, match="taken from the given CommandBus"):
        SyncCommandBus(CommandBus(sync_pool), runtime=runtime, schema="other")


async def test_a_bus_on_another_loops_pool_is_refused(
    runtime: SyncRuntime, bus: CommandBus
) -> None:
    with pytest.raises(ValidationError, match="another event loop"):
        SyncCommandBus(bus, runtime=runtime)


def test_send_with_a_priority_through_the_facade(
    sync_bus: SyncCommandBus, database_url: str, schema: str
) -> None:
    command_id = uuid.uuid4()
    sync_bus.send("payments", "Charge", command_id, {}, priority=5)
    with pytest.raises(ValidationError):
        sync_bus.send("payments", "Charge", uuid.uuid4(), {}, priority=10)

    query = sql.SQL("SELECT priority FROM {} WHERE command_id = %s").format(
        sql.Identifier(schema, "commands")
    )
    with psycopg.connect(database_url) as conn:
        assert conn.execute(query, [command_id]).fetchall() == [(5,)]
