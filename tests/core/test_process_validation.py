"""Bad process-manager input is rejected with a message naming the field, before any write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BaseProcessManager,
    CommandBus,
    ConfigurationError,
    ProcessCommand,
    ProcessReplyRouter,
    ProcessRepository,
    Reply,
    ValidationError,
)
from core._sagas import REPLY_QUEUE, OrderSaga, Step
from core.helpers import execute

pytestmark = pytest.mark.anyio  # the conftest marks async tests too late for parametrize


class _Minimal(BaseProcessManager[dict[str, Any], str]):
    process_type = "minimal"
    domain = "orders"
    reply_queue = REPLY_QUEUE

    def create_initial_state(self, data: dict[str, Any]) -> dict[str, Any]:
        return dict(data)

    def get_first_step(self, state: dict[str, Any]) -> str:
        return "ONLY"

    def build_command(self, step: str, state: dict[str, Any]) -> ProcessCommand:
        return ProcessCommand("DoIt", {})

    def update_state(self, state: dict[str, Any], step: str, reply: Reply) -> dict[str, Any]:
        return state

    def get_next_step(self, step: str, reply: Reply, state: dict[str, Any]) -> str | None:
        return None


async def _written(pool: AsyncConnectionPool, schema: str) -> list[int]:
    rows = await execute(
        pool,
        schema,
        """SELECT (SELECT count(*) FROM {schema}.processes),
                  (SELECT count(*) FROM {schema}.commands),
                  (SELECT count(*) FROM {schema}.process_audit)""",
    )
    return list(rows[0])


def test_type_arguments_give_the_state_and_step_types() -> None:
    assert OrderSaga.state_type is not None and OrderSaga.state_type.__name__ == "OrderState"
    assert OrderSaga.step_type is Step
    assert _Minimal.state_type is None and _Minimal.step_type is None


async def test_invalid_class_attributes_are_rejected(bus: CommandBus) -> None:
    class BadType(_Minimal):
        process_type = "order fulfilment!"

    class BadQueue(_Minimal):
        reply_queue = ""

    with pytest.raises(ValidationError, match="process_type"):
        BadType(bus)
    with pytest.raises(ValidationError, match="reply_queue"):
        BadQueue(bus)

    class NoDomain(BaseProcessManager[dict[str, Any], str]):
        process_type = "x"
        reply_queue = "q"
        create_initial_state = _Minimal.create_initial_state
        get_first_step = _Minimal.get_first_step
        build_command = _Minimal.build_command
        update_state = _Minimal.update_state
        get_next_step = _Minimal.get_next_step

    with pytest.raises(ConfigurationError, match="'domain'"):
        NoDomain(bus)
    with pytest.raises(ConfigurationError, match="needs a CommandBus"):
        _Minimal("postgresql://")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"build_command": lambda self, step, state: {"type": "DoIt"}}, "build_command"),
        (
            {"build_command": lambda self, step, state: ProcessCommand("bad type", {})},
            "command_type",
        ),
        (
            {"build_command": lambda self, step, state: ProcessCommand("DoIt", {"at": object()})},
            "data",
        ),
        (
            {"build_command": lambda self, step, state: ProcessCommand("DoIt", {}, domain="a b")},
            "domain",
        ),
        ({"create_initial_state": lambda self, data: {"when": datetime.now(UTC)}}, "state"),
        ({"create_initial_state": lambda self, data: ["not", "a", "dict"]}, "state"),
        ({"get_first_step": lambda self, state: 3}, "step"),
        ({"get_first_step": lambda self, state: ""}, "step"),
    ],
)
async def test_start_rejects_bad_commands_states_and_steps_before_writing(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, override: dict[str, Any], field: str
) -> None:
    manager_type = type("Broken", (_Minimal,), override)
    with pytest.raises(ValidationError, match=rf"^{field}:"):
        await manager_type(bus).start({})
    assert await _written(pool, schema) == [0, 0, 0]


async def test_a_dataclass_state_round_trips(bus: CommandBus) -> None:
    @dataclass
    class S:
        n: int
        tags: list[str]

    class M(BaseProcessManager[S, str]):
        process_type = "m"
        domain = "orders"
        reply_queue = REPLY_QUEUE

        def create_initial_state(self, data: dict[str, Any]) -> S:
            return S(**data)

        def get_first_step(self, state: S) -> str:
            return "ONLY"

        def build_command(self, step: str, state: S) -> ProcessCommand:
            return ProcessCommand("DoIt", {})

        def update_state(self, state: S, step: str, reply: Reply) -> S:
            return state

        def get_next_step(self, step: str, reply: Reply, state: S) -> str | None:
            return None

    manager = M(bus)
    assert M.state_type is S  # inferred from the type arguments, even for a local class
    assert manager.state_to_dict(S(1, ["a"])) == {"n": 1, "tags": ["a"]}
    assert manager.state_from_dict({"n": 1, "tags": ["a"]}) == S(1, ["a"])


async def test_router_configuration_errors(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    saga = OrderSaga(bus)

    def router(**kw: Any) -> ProcessReplyRouter:
        kw.setdefault("reply_queue", REPLY_QUEUE)
        kw.setdefault("managers", [saga])
        kw.setdefault("schema", schema)
        return ProcessReplyRouter(pool, **kw)

    with pytest.raises(ValidationError, match="managers"):
        router(managers=[])
    with pytest.raises(ValidationError, match="managers"):
        router(managers=[object()])
    with pytest.raises(ValidationError, match="reply_queue"):
        router(reply_queue="no spaces")
    with pytest.raises(ValidationError, match="concurrency"):
        router(concurrency=0)
    with pytest.raises(ConfigurationError, match="two managers"):
        router(managers=[saga, OrderSaga(bus)])
    with pytest.raises(ConfigurationError, match="replies to 'order-replies'"):
        router(reply_queue="other-replies")
    with pytest.raises(ConfigurationError, match="schema"):
        router(schema="commandbus_other")
    too_big = router(concurrency=20)  # the test pool has max_size=20
    with pytest.raises(ConfigurationError, match="max_size=20"):
        await too_big.run()


async def test_repository_rejects_bad_arguments(pool: AsyncConnectionPool, schema: str) -> None:
    repo = ProcessRepository(pool, schema=schema)
    with pytest.raises(ValidationError, match="process_id"):
        await repo.get("not-a-uuid")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="status"):
        await repo.list("orders", status="DONE")
    with pytest.raises(ValidationError, match="domain"):
        await repo.list("")
    with pytest.raises(ValidationError, match="limit"):
        await repo.list("orders", limit=0)
    with pytest.raises(ValidationError, match="parked_id"):
        await repo.retry_parked_reply(0, operator="alice")
    with pytest.raises(ValidationError, match="schema"):
        ProcessRepository(pool, schema="no-dashes")
