"""No traps (issue #17 item 4): inputs that used to do the wrong thing quietly, or escape as
raw exceptions, are refused with a ValidationError naming the argument, and nothing is
written.

Also covered elsewhere: an operator ``reason``/``operator`` with NUL or a lone surrogate
(test_tsq_bulk.py), ``commands show --json`` with the traceback (test_cli_tsq.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BatchCommand,
    CommandBus,
    CommandStatus,
    HandlerRegistry,
    RetryPolicy,
    SendRequest,
    ValidationError,
    Worker,
)
from commandbus._validation import DEFAULT_MAX_DATA_BYTES
from core._parking import park_many
from core._tables import Tables
from core.test_cli import db, run_cli

pytestmark = pytest.mark.anyio  # the conftest marks async tests too late for parametrize

DOMAIN = "traps"


class ConnectionProxy:
    """Looks like ``django.db.connection`` to the bus (detected by module, not import)."""

    __module__ = "django.utils.connection"


class DatabaseWrapper:
    """Looks like ``django.db.connections["default"]``."""

    __module__ = "django.db.backends.postgresql.base"


async def refused(call: Awaitable[Any], field: str) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        await call
    assert raised.value.field == field, raised.value
    return raised.value


def request(**overrides: Any) -> SendRequest:
    fields: dict[str, Any] = {
        "domain": DOMAIN,
        "command_type": "Do",
        "command_id": uuid.uuid4(),
        "data": {},
    }
    fields.update(overrides)
    return SendRequest(**fields)


async def test_conn_none_said_explicitly_is_refused(bus: CommandBus, tables: Tables) -> None:
    command_id = uuid.uuid4()
    error = await refused(bus.send(DOMAIN, "Do", command_id, {}, conn=None), "conn")  # type: ignore[arg-type]
    assert "leave conn out" in str(error)
    await refused(bus.send_batch([request()], conn=None), "conn")  # type: ignore[arg-type]
    await refused(
        bus.create_batch(DOMAIN, [BatchCommand("Do", uuid.uuid4(), {})], conn=None),  # type: ignore[arg-type]
        "conn",
    )
    assert await tables.counts() == {"commands": 0, "audit": 0}
    # Left out, the bus's own pool writes and commits.
    await bus.send(DOMAIN, "Do", command_id, {})
    assert await tables.count("commands") == 1


@pytest.mark.parametrize("kind", [ConnectionProxy, DatabaseWrapper])
async def test_djangos_connection_is_refused_with_what_to_pass(
    bus: CommandBus, tables: Tables, kind: type
) -> None:
    error = await refused(bus.send(DOMAIN, "Do", uuid.uuid4(), {}, conn=kind()), "conn")
    assert kind.__name__ in str(error)
    assert "connection.connection" in str(error)
    assert "SyncCommandBus" in str(error)  # the async bus cannot use a sync connection
    await refused(bus.send_batch([request()], conn=kind()), "conn")
    assert await tables.counts() == {"commands": 0, "audit": 0}


@pytest.mark.parametrize(
    "delay", [10**400, -(10**400), 10**5000, float("inf")], ids=["e400", "-e400", "e5000", "inf"]
)
async def test_an_enormous_delay_is_refused_naming_delay(
    bus: CommandBus, tables: Tables, delay: float
) -> None:
    await refused(bus.send(DOMAIN, "Do", uuid.uuid4(), {}, delay=delay), "delay")
    await refused(bus.send_batch([request(delay=delay)]), "delay")
    assert await tables.counts() == {"commands": 0, "audit": 0}


async def test_data_over_the_bus_limit_is_refused_before_sending(
    pool: AsyncConnectionPool, schema: str, tables: Tables
) -> None:
    assert DEFAULT_MAX_DATA_BYTES == 16 * 1024 * 1024
    assert CommandBus(pool, schema=schema).max_data_bytes == DEFAULT_MAX_DATA_BYTES
    bus = CommandBus(pool, schema=schema, max_data_bytes=1000)
    big = {"blob": "x" * 1000}
    error = await refused(bus.send(DOMAIN, "Do", uuid.uuid4(), big), "data")
    assert "1,000" in str(error) and "max_data_bytes" in str(error)
    # One bad command in a batch: nothing of the batch is written.
    await refused(bus.send_batch([request(), request(data=big)]), "data")
    await refused(bus.create_batch(DOMAIN, [BatchCommand("Do", uuid.uuid4(), big)]), "data")
    assert await tables.counts() == {"commands": 0, "audit": 0}
    # At the limit it goes; without a limit of ours, size is PostgreSQL's business.
    exact = {"b": "x" * (1000 - len('{"b":""}'))}
    await bus.send(DOMAIN, "Do", uuid.uuid4(), exact)
    await CommandBus(pool, schema=schema, max_data_bytes=None).send(DOMAIN, "Do", uuid.uuid4(), big)
    assert await tables.count("commands") == 2


@pytest.mark.parametrize("bad", [0, -1, True, 2**40, "1MB"])
async def test_max_data_bytes_itself_is_checked(pool: AsyncConnectionPool, bad: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        CommandBus(pool, max_data_bytes=bad)
    assert raised.value.field == "max_data_bytes"


async def test_a_send_over_what_postgresql_takes_in_one_value_is_refused(
    bus: CommandBus, tables: Tables, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real ceiling is 255 MiB of jsonb; a smaller one shows the check without the memory.
    monkeypatch.setattr("commandbus._send.MAX_SEND_BYTES", 500)
    requests = [request(data={"n": "x" * 100}) for _ in range(5)]
    error = await refused(bus.send_batch(requests), "requests")
    assert "smaller batches" in str(error)
    assert await tables.counts() == {"commands": 0, "audit": 0}


async def test_tsq_complete_with_deeply_nested_result_is_a_clean_cli_error(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus, tables: Tables
) -> None:
    (command_id,) = await park_many(bus, pool, schema, 1, domain=DOMAIN)
    audit_before = await tables.count("audit")
    for depth in (50_000, 990):  # deeper than json.loads reads; deeper than we serialise
        nested = "[" * depth + "]" * depth
        result = await run_cli(
            *db(database_url, schema, "tsq", "complete", DOMAIN, str(command_id)),
            "--result",
            '{"deep":' + nested + "}",
        )
        line = result.one_line_error(2)
        assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
        assert "deep" in line or "result" in line, line
    command = await bus.get_command(DOMAIN, command_id)
    assert command is not None and command.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE
    assert await tables.count("audit") == audit_before


@pytest.mark.parametrize("field", ["visibility_timeout", "poll_interval"])
async def test_seconds_beyond_any_float_are_refused_naming_the_setting(
    pool: AsyncConnectionPool, field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        Worker(pool, domain=DOMAIN, registry=HandlerRegistry(), **{field: 10**400})
    assert raised.value.field == field
    with pytest.raises(ValidationError) as raised:
        RetryPolicy(backoff=(10**400,))
    assert raised.value.field == "backoff"
