"""The outbox for sync apps: a command sent on the caller's psycopg.Connection becomes
visible exactly when the caller commits, and disappears with a rollback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from commandbus import DuplicateCommandError, SendRequest, ValidationError
from commandbus_sync import SyncCommandBus


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database_url) as c:
        yield c


def test_visible_only_after_the_caller_commits(
    sync_bus: SyncCommandBus, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    cid = uuid.uuid4()
    with conn.transaction():
        conn.execute("SELECT 1")  # the app's own work in the same transaction
        sync_bus.send("orders", "Ship", cid, {"n": 1}, conn=conn)
        assert sync_bus.get_command("orders", cid) is None  # not committed yet
    meta = sync_bus.get_command("orders", cid)
    assert meta is not None
    assert meta.data == {"n": 1}


def test_gone_when_the_caller_rolls_back(
    sync_bus: SyncCommandBus, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    cid = uuid.uuid4()
    with pytest.raises(ZeroDivisionError), conn.transaction():
        sync_bus.send("orders", "Ship", cid, {}, conn=conn)
        1 / 0  # noqa: B018
    assert sync_bus.get_command("orders", cid) is None


def test_an_idle_connection_is_not_committed_on_the_callers_behalf(
    sync_bus: SyncCommandBus, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Django's atomic() before its first query: our statement opens the caller's
    transaction and the caller decides."""
    cid = uuid.uuid4()
    sync_bus.send("orders", "Ship", cid, {}, conn=conn)
    conn.rollback()
    assert sync_bus.get_command("orders", cid) is None
    sync_bus.send("orders", "Ship", cid, {}, conn=conn)
    conn.commit()
    assert sync_bus.get_command("orders", cid) is not None


def test_autocommit_connection_commits_at_once(sync_bus: SyncCommandBus, database_url: str) -> None:
    cid = uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as c:
        sync_bus.send("orders", "Ship", cid, {}, conn=c)
        assert sync_bus.get_command("orders", cid) is not None


def test_a_duplicate_rolls_back_only_our_statement(
    sync_bus: SyncCommandBus, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    existing, fresh = uuid.uuid4(), uuid.uuid4()
    sync_bus.send("orders", "Ship", existing, {})
    with conn.transaction():
        with pytest.raises(DuplicateCommandError) as caught:
            sync_bus.send_batch(
                [
                    SendRequest("orders", "Ship", fresh, {}),
                    SendRequest("orders", "Ship", existing, {}),
                ],
                conn=conn,
            )
        assert caught.value.command_ids == [existing]
        assert conn.execute("SELECT 42").fetchone() == (42,)  # the caller's tx is still usable
    assert sync_bus.get_command("orders", fresh) is None


def test_works_whatever_the_connections_row_factory(
    sync_bus: SyncCommandBus, database_url: str
) -> None:
    cid = uuid.uuid4()
    with psycopg.connect(database_url, row_factory=dict_row) as c, c.transaction():
        result = sync_bus.send("orders", "Ship", cid, {}, conn=c)
    assert result.command_id == cid


async def test_an_async_connection_is_refused_with_a_clear_error(
    sync_bus: SyncCommandBus, database_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as aconn:
        with pytest.raises(ValidationError, match=r"AsyncConnection.*event loop") as caught:
            sync_bus.send("orders", "Ship", uuid.uuid4(), {}, conn=aconn)  # type: ignore[arg-type]
    assert caught.value.field == "conn"


def test_something_else_is_refused(sync_bus: SyncCommandBus) -> None:
    with pytest.raises(ValidationError, match=r"must be a psycopg\.Connection"):
        sync_bus.send("orders", "Ship", uuid.uuid4(), {}, conn="dsn")  # type: ignore[arg-type]
