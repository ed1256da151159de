"""A three-step order saga, its handlers, and a harness running a Worker and a router.

Steps RESERVE → CHARGE → SHIP; RESERVE is undone by RELEASE, CHARGE by REFUND. Handlers
succeed unless the test scripted a failure for (command type, order id).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BaseProcessManager,
    Command,
    CommandBus,
    HandlerContext,
    HandlerRegistry,
    ProcessCommand,
    ProcessInfo,
    ProcessReplyRouter,
    ProcessRepository,
    ProcessStatus,
    Reply,
    ReplyOutcome,
)
from core.helpers import make_worker, running, wait_until

SAGA_DOMAIN = "orders"
REPLY_QUEUE = "order-replies"


class Step(StrEnum):
    RESERVE = "RESERVE"
    CHARGE = "CHARGE"
    SHIP = "SHIP"
    RELEASE = "RELEASE"
    REFUND = "REFUND"


COMMAND_TYPES = {
    Step.RESERVE: "ReserveStock",
    Step.CHARGE: "ChargeCard",
    Step.SHIP: "ShipOrder",
    Step.RELEASE: "ReleaseStock",
    Step.REFUND: "RefundCard",
}
NEXT = {Step.RESERVE: Step.CHARGE, Step.CHARGE: Step.SHIP, Step.SHIP: None}
UNDO = {Step.RESERVE: Step.RELEASE, Step.CHARGE: Step.REFUND}


@dataclass
class OrderState:
    order_id: str
    amount: int
    reservation: str | None = None
    charge_id: str | None = None
    tracking: str | None = None
    released: bool = False
    refunded: bool = False
    log: list[str] = field(default_factory=list)


class OrderSaga(BaseProcessManager[OrderState, Step]):
    process_type = "order_fulfilment"
    domain = SAGA_DOMAIN
    reply_queue = REPLY_QUEUE

    def create_initial_state(self, data: dict[str, Any]) -> OrderState:
        return OrderState(order_id=data["order_id"], amount=data["amount"])

    def get_first_step(self, state: OrderState) -> Step:
        return Step.RESERVE

    def build_command(self, step: Step, state: OrderState) -> ProcessCommand:
        return ProcessCommand(
            COMMAND_TYPES[step], {"order_id": state.order_id, "amount": state.amount}
        )

    def update_state(self, state: OrderState, step: Step, reply: Reply) -> OrderState:
        state.log.append(f"{step.value}:{reply.outcome.value}")
        if reply.outcome == ReplyOutcome.SUCCESS:
            result = reply.result or {}
            if step == Step.RESERVE:
                state.reservation = result.get("reservation")
            elif step == Step.CHARGE:
                state.charge_id = result.get("charge_id")
            elif step == Step.SHIP:
                state.tracking = result.get("tracking")
            elif step == Step.RELEASE:
                state.released = True
            elif step == Step.REFUND:
                state.refunded = True
        return state

    def get_next_step(self, step: Step, reply: Reply, state: OrderState) -> Step | None:
        return NEXT[step]

    def get_compensation_step(self, step: Step) -> Step | None:
        return UNDO.get(step)


#: What a handler does for (command_type, order_id): raise, or await something first.
Script = dict[tuple[str, str], Callable[[Command], Any]]


def order_registry(script: Script, calls: list[tuple[str, str]]) -> HandlerRegistry:
    registry = HandlerRegistry()

    def register(command_type: str) -> None:
        async def handle(command: Command, ctx: HandlerContext) -> dict[str, Any]:
            order_id = command.data["order_id"]
            calls.append((command_type, order_id))
            action = script.get((command_type, order_id))
            if action is not None:
                outcome = action(command)
                if asyncio.iscoroutine(outcome):
                    await outcome
            return {
                "reservation": f"res-{order_id}",
                "charge_id": f"ch-{order_id}",
                "tracking": f"trk-{order_id}",
            }

        registry.register(SAGA_DOMAIN, command_type, handle)

    for command_type in COMMAND_TYPES.values():
        register(command_type)
    return registry


@dataclass
class SagaEnv:
    pool: AsyncConnectionPool
    schema: str
    bus: CommandBus
    saga: OrderSaga
    repo: ProcessRepository
    script: Script
    calls: list[tuple[str, str]]
    router: ProcessReplyRouter | None = None

    async def start_order(self, order_id: str, amount: int = 100) -> Any:
        return await self.saga.start({"order_id": order_id, "amount": amount})

    async def wait_status(
        self, process_id: Any, *statuses: ProcessStatus, within: float = 15
    ) -> ProcessInfo:
        last: list[ProcessInfo | None] = [None]

        async def probe() -> ProcessInfo | None:
            last[0] = info = await self.repo.get(process_id)
            return info if info is not None and info.status in statuses else None

        try:
            return await wait_until(probe, timeout=within)
        except AssertionError:
            seen = None if last[0] is None else (last[0].status, last[0].current_step)
            raise AssertionError(
                f"process {process_id} did not reach {statuses} in {within}s; last seen {seen}"
            ) from None

    def state(self, info: ProcessInfo) -> OrderState:
        return self.saga.state_from_dict(info.state)


def make_router(env: SagaEnv, **options: Any) -> ProcessReplyRouter:
    options.setdefault("poll_interval", 0.05)
    options.setdefault("concurrency", 4)
    managers = options.pop("managers", [env.saga])
    return ProcessReplyRouter(
        env.pool, reply_queue=REPLY_QUEUE, managers=managers, schema=env.schema, **options
    )


@asynccontextmanager
async def running_router(router: ProcessReplyRouter) -> AsyncIterator[ProcessReplyRouter]:
    task = asyncio.create_task(router.run())
    ready = asyncio.create_task(router.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=10, return_when="FIRST_COMPLETED")
    if ready not in done:
        ready.cancel()
        if task in done:
            task.result()
        raise AssertionError("router not ready within 10s")
    try:
        yield router
    finally:
        await asyncio.wait_for(router.stop(5), 15)
        await asyncio.wait_for(task, 10)


@asynccontextmanager
async def saga_env(
    pool: AsyncConnectionPool,
    schema: str,
    *,
    worker: bool = True,
    router: bool = True,
    worker_options: dict[str, Any] | None = None,
    router_options: dict[str, Any] | None = None,
) -> AsyncIterator[SagaEnv]:
    """The saga with a worker and a router running (each optional) for the block."""
    bus = CommandBus(pool, schema=schema)
    script: Script = {}
    calls: list[tuple[str, str]] = []
    env = SagaEnv(
        pool, schema, bus, OrderSaga(bus), ProcessRepository(pool, schema=schema), script, calls
    )
    async with AsyncExitStack() as stack:
        if worker:
            w = make_worker(
                pool,
                schema,
                order_registry(script, calls),
                domain=SAGA_DOMAIN,
                **(worker_options or {}),
            )
            await stack.enter_async_context(running(w))
        if router:
            env.router = make_router(env, **(router_options or {}))
            await stack.enter_async_context(running_router(env.router))
        yield env
