"""Bad input is refused before anything is written, with an error naming the field."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    CommandBus,
    CommandBusError,
    DuplicateCommandError,
    SendRequest,
    ValidationError,
    migrate,
    migration_sql,
)
from core._tables import Tables

pytestmark = pytest.mark.anyio  # the conftest marks async tests too late for parametrize


class Opaque:
    """Not JSON-serialisable, with a repr that is the same in every test process."""

    def __repr__(self) -> str:
        return "Opaque()"


class Nested(list[Any]):
    """A list whose repr stays short however deep it nests (test ids repr their values)."""

    def __repr__(self) -> str:
        return "Nested(...)"


BAD_NAMES = [
    "",
    "has space",
    "semi;colon",
    "quote'",
    'double"quote',
    "slash/",
    "naïve",
    "tab\t",
    "trailing-newline\n",
    "x" * 129,
    ".",  # a path segment, not a name: the console's links would resolve it
    "..",
    "...",
    None,
    42,
]

VALID: dict[str, Any] = {
    "domain": "payments",
    "command_type": "Charge",
    "command_id": uuid.UUID(int=1),
    "data": {},
}

BAD_SEND_ARGUMENTS: list[tuple[str, Any]] = [
    *[("domain", v) for v in BAD_NAMES],
    *[("command_type", v) for v in BAD_NAMES],
    ("command_id", str(uuid.UUID(int=2))),
    ("command_id", uuid.UUID(int=2).bytes),
    ("command_id", 12345),
    ("command_id", None),
    ("correlation_id", "not-a-uuid"),
    ("correlation_id", str(uuid.UUID(int=3))),
    ("correlation_id", 7),
    ("data", []),
    ("data", "text"),
    ("data", None),
    ("data", 5),
    ("data", {"set": {1, 2}}),
    ("data", {"nan": float("nan")}),
    ("data", {"inf": float("-inf")}),
    ("data", {"object": Opaque()}),
    ("data", {("tuple", "key"): 1}),
    ("data", {"deep": [{"bytes": b"raw"}]}),
    ("data", {"nul": "a\x00b"}),  # jsonb cannot store U+0000
    ("data", {"key\x00": 1}),
    ("data", {"path": "abc\udc80"}),  # a lone surrogate (os.fsdecode of bad bytes)
    ("data", {"deep": functools.reduce(lambda inner, _: Nested([inner]), range(5000), [])}),
    ("delay", -1),
    ("delay", -0.001),
    ("delay", float("nan")),
    ("delay", float("inf")),
    ("delay", timedelta(seconds=-1)),
    ("delay", "5"),
    ("delay", True),
    ("delay", timedelta.max),
    ("delay", 1e300),
    ("max_attempts", 0),
    ("max_attempts", -1),
    ("max_attempts", True),
    ("max_attempts", False),
    ("max_attempts", 1.5),
    ("max_attempts", "3"),
    ("max_attempts", 2**31),
    *[("reply_to", v) for v in BAD_NAMES if v is not None],
]


def _case_id(case: tuple[str, Any]) -> str:
    field, value = case
    return f"{field}={value!r}"[:60]


@pytest.mark.parametrize("case", BAD_SEND_ARGUMENTS, ids=_case_id)
async def test_send_refuses_bad_input_and_writes_nothing(
    bus: CommandBus, tables: Tables, case: tuple[str, Any]
) -> None:
    field, value = case
    arguments = {**VALID, field: value}

    with pytest.raises(ValidationError) as caught:
        await bus.send(**arguments)

    err = caught.value
    assert err.field == field
    assert str(err).startswith(f"{field}: ")
    assert isinstance(err, CommandBusError) and isinstance(err, ValueError)
    assert await tables.counts() == {"commands": 0, "audit": 0}


@pytest.mark.parametrize("case", BAD_SEND_ARGUMENTS[::4], ids=_case_id)
async def test_send_batch_refuses_a_bad_request_anywhere_and_writes_nothing(
    bus: CommandBus, tables: Tables, case: tuple[str, Any]
) -> None:
    field, value = case
    good = [SendRequest(**{**VALID, "command_id": uuid.uuid4()}) for _ in range(3)]
    bad = SendRequest(**{**VALID, field: value})

    with pytest.raises(ValidationError) as caught:
        await bus.send_batch([*good, bad])

    assert caught.value.field == field
    assert await tables.counts() == {"commands": 0, "audit": 0}


BAD_SCHEMAS = [
    "",
    "bad-name",
    "has space",
    "1starts_with_a_digit",
    "x" * 64,
    'x"; DROP TABLE users; --',
    "trailing_newline\n",
    "ünï",
    None,
]


@pytest.mark.parametrize("bad", BAD_SCHEMAS, ids=repr)
async def test_a_bad_schema_name_is_refused_everywhere(pool: AsyncConnectionPool, bad: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        CommandBus(pool, schema=bad)
    assert caught.value.field == "schema"
    with pytest.raises(ValidationError) as caught:
        await migrate(pool, schema=bad)
    assert caught.value.field == "schema"
    with pytest.raises(ValidationError) as caught:
        migration_sql(bad)
    assert caught.value.field == "schema"


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "3"], ids=repr)
async def test_a_bad_default_max_attempts_is_refused(pool: AsyncConnectionPool, bad: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        CommandBus(pool, default_max_attempts=bad)
    assert caught.value.field == "default_max_attempts"


BAD_QUERIES: list[tuple[str, Any]] = [
    ("limit", 0),
    ("limit", -1),
    ("limit", 10_001),
    ("limit", True),
    ("limit", "10"),
    ("limit", 2.0),
    ("offset", -1),
    ("offset", True),
    ("offset", "0"),
    ("offset", 2**63),  # beyond bigint
    ("status", "DONE"),
    ("status", "pending"),
    ("status", 3),
    ("domain", "bad name"),
    ("domain", ""),
    ("command_type", "bad;type"),
    ("created_after", "2024-01-01"),
    ("created_after", 1_700_000_000),
    ("created_after", datetime(2024, 1, 1)),  # naive: which time zone?
    ("created_before", "yesterday"),
    ("created_before", datetime(2024, 1, 1).date()),
]


@pytest.mark.parametrize("case", BAD_QUERIES, ids=_case_id)
async def test_query_commands_refuses_bad_filters(bus: CommandBus, case: tuple[str, Any]) -> None:
    field, value = case
    with pytest.raises(ValidationError) as caught:
        await bus.query_commands(**{field: value})
    assert caught.value.field == field


async def test_aware_datetimes_in_any_time_zone_are_accepted(bus: CommandBus) -> None:
    command_id = uuid.uuid4()
    await bus.send("payments", "Charge", command_id, {})
    soon = datetime.now(timezone(timedelta(hours=-7))) + timedelta(minutes=1)

    assert [c.command_id for c in await bus.query_commands(created_before=soon)] == [command_id]
    assert await bus.query_commands(created_after=soon) == []


async def test_reads_refuse_bad_keys(bus: CommandBus) -> None:
    with pytest.raises(ValidationError) as caught:
        await bus.get_command("bad name", uuid.uuid4())
    assert caught.value.field == "domain"
    with pytest.raises(ValidationError) as caught:
        await bus.get_command("payments", str(uuid.uuid4()))  # type: ignore[arg-type]
    assert caught.value.field == "command_id"
    with pytest.raises(ValidationError) as caught:
        await bus.get_audit_trail("not-a-uuid")  # type: ignore[arg-type]
    assert caught.value.field == "command_id"
    with pytest.raises(ValidationError) as caught:
        await bus.get_audit_trail(uuid.uuid4(), domain="")
    assert caught.value.field == "domain"


async def test_a_bad_request_in_a_batch_is_named_by_position_and_id(
    bus: CommandBus, tables: Tables
) -> None:
    requests = [SendRequest(**{**VALID, "command_id": uuid.uuid4()}) for _ in range(5)]
    bad_id = uuid.uuid4()
    requests[3] = SendRequest(**{**VALID, "command_id": bad_id, "data": {"when": datetime.now()}})

    with pytest.raises(ValidationError) as caught:
        await bus.send_batch(requests)

    assert caught.value.field == "data"
    assert "requests[3]" in str(caught.value) and str(bad_id) in str(caught.value)
    assert await tables.counts() == {"commands": 0, "audit": 0}


async def test_duplicates_across_domains_name_each_id_with_its_domain(bus: CommandBus) -> None:
    taken = [
        SendRequest("orders", "Ship", uuid.uuid4(), {}),
        SendRequest("payments", "Pay", uuid.uuid4(), {}),
    ]
    await bus.send_batch(taken)

    with pytest.raises(DuplicateCommandError) as caught:
        await bus.send_batch([*taken, SendRequest("orders", "Ship", uuid.uuid4(), {})])

    assert caught.value.domains == ["orders", "payments"]
    assert f"orders/{taken[0].command_id}" in str(caught.value)
    assert f"payments/{taken[1].command_id}" in str(caught.value)
