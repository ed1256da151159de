"""Registering handlers: functions, the decorator, and methods of service instances."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    ConfigurationError,
    HandlerAlreadyRegisteredError,
    HandlerContext,
    HandlerRegistry,
    ValidationError,
    handler,
)
from commandbus.handlers import is_async_handler
from core.helpers import DOMAIN, make_worker, running, wait_for_status


async def _async_handler(command: Command, ctx: HandlerContext) -> None:
    return None


def _plain_handler(command: Command, ctx: HandlerContext) -> None:
    return None


class Payments:
    """A service carrying its dependencies; its marked methods are handlers."""

    def __init__(self, gateway: list[str]) -> None:
        self.gateway = gateway

    @handler("payments", "Charge")
    async def charge(self, command: Command, ctx: HandlerContext) -> dict[str, Any]:
        self.gateway.append(f"charge {command.data['amount']}")
        return {"charged": command.data["amount"]}

    @handler("payments", "Refund")
    def refund(self, command: Command, ctx: HandlerContext) -> dict[str, Any]:
        self.gateway.append(f"refund {command.data['amount']}")
        return {"refunded": command.data["amount"]}

    def not_a_handler(self) -> None:
        raise AssertionError("unmarked methods are not registered")


def test_register_and_get() -> None:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "A", _async_handler)
    registry.register(DOMAIN, "B", _plain_handler)
    registry.register("billing", "A", _plain_handler)
    assert registry.get(DOMAIN, "A") is _async_handler
    assert registry.get(DOMAIN, "B") is _plain_handler
    assert registry.get(DOMAIN, "C") is None
    assert registry.get("nowhere", "A") is None
    assert len(registry) == 3
    assert set(registry) == {(DOMAIN, "A"), (DOMAIN, "B"), ("billing", "A")}
    assert registry.domains() == {DOMAIN, "billing"}


def test_the_decorator_registers_and_returns_the_function_unchanged() -> None:
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Decorated")
    async def decorated(command: Command, ctx: HandlerContext) -> None:
        return None

    assert registry.get(DOMAIN, "Decorated") is decorated
    assert is_async_handler(decorated)


def test_register_instance_finds_marked_methods_bound_to_the_instance() -> None:
    registry = HandlerRegistry()
    service = Payments([])
    keys = registry.register_instance(service)
    assert sorted(keys) == [("payments", "Charge"), ("payments", "Refund")]
    charge = registry.get("payments", "Charge")
    assert charge == service.charge and getattr(charge, "__self__", None) is service
    assert is_async_handler(service.charge) and not is_async_handler(service.refund)
    assert len(registry) == 2


def test_a_second_handler_for_the_same_pair_is_refused() -> None:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "A", _async_handler)
    with pytest.raises(HandlerAlreadyRegisteredError) as caught:
        registry.register(DOMAIN, "A", _plain_handler)
    assert (caught.value.domain, caught.value.command_type) == (DOMAIN, "A")
    assert registry.get(DOMAIN, "A") is _async_handler  # the first one stays

    with pytest.raises(HandlerAlreadyRegisteredError):

        @registry.handler(DOMAIN, "A")
        def again(command: Command, ctx: HandlerContext) -> None:
            return None

    registry.register_instance(Payments([]))
    with pytest.raises(HandlerAlreadyRegisteredError):
        registry.register_instance(Payments([]))


def test_register_instance_registers_all_methods_or_none() -> None:
    registry = HandlerRegistry()
    registry.register("payments", "Refund", _plain_handler)
    with pytest.raises(HandlerAlreadyRegisteredError) as caught:
        registry.register_instance(Payments([]))
    assert caught.value.command_type == "Refund"
    assert registry.get("payments", "Charge") is None  # not half-registered
    assert len(registry) == 1


def test_two_methods_of_one_class_for_the_same_pair_are_refused() -> None:
    class Twice:
        @handler(DOMAIN, "A")
        def one(self, command: Command, ctx: HandlerContext) -> None:
            return None

        @handler(DOMAIN, "A")
        def two(self, command: Command, ctx: HandlerContext) -> None:
            return None

    registry = HandlerRegistry()
    with pytest.raises(HandlerAlreadyRegisteredError):
        registry.register_instance(Twice())
    assert len(registry) == 0


def test_bad_registrations_are_rejected() -> None:
    registry = HandlerRegistry()
    with pytest.raises(ConfigurationError):
        registry.register(DOMAIN, "A", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        registry.register("bad domain", "A", _async_handler)
    with pytest.raises(ValidationError):
        registry.register(DOMAIN, "", _async_handler)
    with pytest.raises(ValidationError):
        handler(DOMAIN, "has space")
    assert len(registry) == 0


def test_async_detection_covers_callable_objects_and_partials() -> None:
    import functools

    class AsyncCallable:
        async def __call__(self, command: Command, ctx: HandlerContext) -> None:
            return None

    class PlainCallable:
        def __call__(self, command: Command, ctx: HandlerContext) -> None:
            return None

    assert is_async_handler(AsyncCallable())
    assert not is_async_handler(PlainCallable())
    assert is_async_handler(functools.partial(_async_handler))
    assert not is_async_handler(_plain_handler)


async def test_a_service_instance_handles_commands_with_its_dependencies(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    gateway: list[str] = []
    registry = HandlerRegistry()
    registry.register_instance(Payments(gateway))
    charge, refund = uuid.uuid4(), uuid.uuid4()
    await bus.send("payments", "Charge", charge, {"amount": 10})
    await bus.send("payments", "Refund", refund, {"amount": 4})
    async with running(make_worker(pool, schema, registry, domain="payments")):
        charged = await wait_for_status(bus, "payments", charge, CommandStatus.COMPLETED)
        refunded = await wait_for_status(bus, "payments", refund, CommandStatus.COMPLETED)
    assert charged.result == {"charged": 10} and refunded.result == {"refunded": 4}
    assert sorted(gateway) == ["charge 10", "refund 4"]


async def test_an_async_callable_object_runs_on_the_loop_with_ctx_conn(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    class Handler:
        async def __call__(self, command: Command, ctx: HandlerContext) -> dict[str, Any]:
            cur = await ctx.conn.execute("SELECT 40 + 2")
            row = await cur.fetchone()
            assert row is not None
            return {"answer": row[0]}

    registry = HandlerRegistry()
    registry.register(DOMAIN, "Ask", Handler())
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Ask", command_id, {})
    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
    assert meta.result == {"answer": 42}
