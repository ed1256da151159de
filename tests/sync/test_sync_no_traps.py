"""No traps in the sync facade (issue #17 item 4): ``conn=None``, Django's connection
objects, an enormous delay and an oversized payload are refused with a ValidationError
naming the argument, and nothing is written."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import BatchCommand, SendRequest, ValidationError
from commandbus_sync import SyncCommandBus, SyncRuntime

DOMAIN = "traps"


class ConnectionProxy:
    """Looks like ``django.db.connection`` (detected by module, Django is not imported)."""

    __module__ = "django.utils.connection"


def refused(call: Callable[[], Any], field: str) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        call()
    assert raised.value.field == field, raised.value
    return raised.value


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database_url) as c:
        yield c


def count(database_url: str, schema: str) -> int:
    with psycopg.connect(database_url) as c:
        row = c.execute(f"SELECT count(*) FROM {schema}.commands").fetchone()
    assert row is not None
    return int(row[0])


def test_conn_none_and_djangos_proxy_are_refused(
    sync_bus: SyncCommandBus, database_url: str, schema: str
) -> None:
    request = SendRequest(DOMAIN, "Do", uuid.uuid4(), {})
    refused(lambda: sync_bus.send(DOMAIN, "Do", uuid.uuid4(), {}, conn=None), "conn")  # type: ignore[arg-type]
    refused(lambda: sync_bus.send_batch([request], conn=None), "conn")  # type: ignore[arg-type]
    refused(
        lambda: sync_bus.create_batch(DOMAIN, [BatchCommand("Do", uuid.uuid4(), {})], conn=None),  # type: ignore[arg-type]
        "conn",
    )
    error = refused(
        lambda: sync_bus.send(DOMAIN, "Do", uuid.uuid4(), {}, conn=ConnectionProxy()),  # type: ignore[arg-type]
        "conn",
    )
    assert "connection.ensure_connection()" in str(error)
    assert "conn=connection.connection" in str(error)
    assert count(database_url, schema) == 0


def test_delay_and_payload_limits_hold_on_the_callers_connection(
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    schema: str,
    database_url: str,
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    bus = SyncCommandBus(pool=sync_pool, runtime=runtime, schema=schema, max_data_bytes=100)
    assert bus.bus.max_data_bytes == 100
    big = {"blob": "x" * 100}
    with conn.transaction():
        refused(lambda: bus.send(DOMAIN, "Do", uuid.uuid4(), big, conn=conn), "data")
        refused(lambda: bus.send(DOMAIN, "Do", uuid.uuid4(), {}, delay=10**400, conn=conn), "delay")
    refused(lambda: bus.send(DOMAIN, "Do", uuid.uuid4(), big), "data")
    refused(lambda: bus.send(DOMAIN, "Do", uuid.uuid4(), {}, delay=10**400), "delay")
    assert count(database_url, schema) == 0
