"""ProcessReplyRouter: many processes at once, duplicate deliveries, replies it cannot apply.

Replies for one process are applied one at a time; a reply never advances a process
twice; a reply for an unknown process or type, or one whose handling keeps failing, is
parked with a clear reason instead of looping.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BaseProcessManager,
    InvalidOperationError,
    ProcessCommand,
    ProcessStatus,
    Reply,
    ReplyOutcome,
    ReplyQueue,
    RetryPolicy,
)
from core._sagas import (
    REPLY_QUEUE,
    SAGA_DOMAIN,
    OrderSaga,
    OrderState,
    Step,
    make_router,
    running_router,
    saga_env,
)
from core.helpers import execute, starved_pool, wait_until


async def _replies_waiting(pool: AsyncConnectionPool, schema: str) -> int:
    rows = await execute(pool, schema, "SELECT count(*) FROM {schema}.replies")
    return int(rows[0][0])


async def test_200_concurrent_processes_all_complete_with_correct_state(
    database_url: str, pool: AsyncConnectionPool, schema: str
) -> None:
    async with AsyncConnectionPool(database_url, min_size=4, max_size=50, open=False) as big:
        async with saga_env(
            big,
            schema,
            worker_options={"concurrency": 20},
            router_options={"concurrency": 20},
        ) as env:
            orders = [f"c-{i}" for i in range(200)]
            ids = await asyncio.gather(*(env.start_order(o, i) for i, o in enumerate(orders)))

            async def all_done() -> bool:
                done = await env.repo.list(SAGA_DOMAIN, status="COMPLETED", limit=1000)
                return len(done) == 200

            await wait_until(all_done, timeout=60, what="200 processes COMPLETED")
            assert env.router is not None
            stats = dict(env.router.stats)

        for i, (order_id, process_id) in enumerate(zip(orders, ids, strict=True)):
            info = await env.repo.get(process_id)
            assert info is not None and info.status == ProcessStatus.COMPLETED
            state = env.state(info)
            assert (state.order_id, state.amount) == (order_id, i)
            assert state.log == ["RESERVE:SUCCESS", "CHARGE:SUCCESS", "SHIP:SUCCESS"]
            assert state.tracking == f"trk-{order_id}"
        assert stats["applied"] == 600 and stats["ignored"] == 0 and stats["parked"] == 0
        rows = await execute(
            big, schema, "SELECT entry_type, count(*) FROM {schema}.process_audit GROUP BY 1"
        )
        assert rows == [("STEP", 600)]
        assert await _replies_waiting(big, schema) == 0


async def test_a_reply_redelivered_after_its_lease_advances_the_process_once(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema, router=False) as env:
        process_id = await env.start_order("d-1")
        await wait_until(lambda: _replies_waiting(pool, schema), what="the reply to the first step")
        # A router leases the reply and dies before acking it.
        crashed = ReplyQueue(pool, REPLY_QUEUE, schema=schema)
        (stale,) = await crashed.read(10, visibility_timeout=0.3)
        assert stale.read_count == 1

        router = make_router(env)
        async with running_router(router):
            info = await env.wait_status(process_id, ProcessStatus.COMPLETED)
            # The dead router's late ack (or a late apply) finds its lease gone.
            assert await crashed.ack(stale) is False
            assert await router._apply(stale) == "lease_lost"

    assert env.state(info).log == ["RESERVE:SUCCESS", "CHARGE:SUCCESS", "SHIP:SUCCESS"]
    trail = await env.repo.get_audit_trail(process_id)
    assert [(e.entry_type, e.step) for e in trail] == [
        ("STEP", "RESERVE"),
        ("STEP", "CHARGE"),
        ("STEP", "SHIP"),
    ]
    assert [c for c, _ in env.calls] == ["ReserveStock", "ChargeCard", "ShipOrder"]


async def test_a_duplicate_reply_is_recorded_and_acked_without_advancing(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema, router=False) as env:
        process_id = await env.start_order("d-2")
        await wait_until(lambda: _replies_waiting(pool, schema), what="the reply to the first step")
        # The same reply delivered twice (e.g. a worker redelivery), both before the router runs.
        await execute(
            pool,
            schema,
            """INSERT INTO {schema}.replies (queue, domain, command_id, command_type,
                   correlation_id, outcome, result)
               SELECT queue, domain, command_id, command_type, correlation_id, outcome, result
               FROM {schema}.replies""",
        )
        assert await _replies_waiting(pool, schema) == 2
        async with running_router(make_router(env)) as router:
            info = await env.wait_status(process_id, ProcessStatus.COMPLETED)
            await wait_until(lambda: _no_replies(pool, schema), what="all replies acked")
            stats = dict(router.stats)

    assert env.state(info).log == ["RESERVE:SUCCESS", "CHARGE:SUCCESS", "SHIP:SUCCESS"]
    assert stats["applied"] == 3 and stats["ignored"] == 1
    trail = await env.repo.get_audit_trail(process_id)
    ignored = [e for e in trail if e.entry_type == "IGNORED_REPLY"]
    assert len(ignored) == 1 and ignored[0].reply_outcome == ReplyOutcome.SUCCESS
    assert ignored[0].note is not None and "stale or duplicate" in ignored[0].note
    assert [e.step for e in trail if e.entry_type == "STEP"] == ["RESERVE", "CHARGE", "SHIP"]

    # A reply for a finished process is recorded too, and acked.
    first = trail[0]
    await execute(
        pool,
        schema,
        """INSERT INTO {schema}.replies (queue, domain, command_id, command_type,
               correlation_id, outcome)
           VALUES (%s, %s, %s, 'ShipOrder', %s, 'SUCCESS')""",
        [REPLY_QUEUE, SAGA_DOMAIN, first.command_id, process_id],
    )
    async with running_router(make_router(env)):
        await wait_until(lambda: _no_replies(pool, schema), what="the late reply acked")
    trail = await env.repo.get_audit_trail(process_id)
    assert trail[-1].entry_type == "IGNORED_REPLY"
    assert trail[-1].note == "process is COMPLETED"


async def _no_replies(pool: AsyncConnectionPool, schema: str) -> bool:
    return await _replies_waiting(pool, schema) == 0


async def test_a_reply_for_an_unknown_process_is_parked_not_looped(
    pool: AsyncConnectionPool, schema: str
) -> None:
    ghost = uuid.uuid4()
    await execute(
        pool,
        schema,
        """INSERT INTO {schema}.replies (queue, domain, command_id, command_type,
               correlation_id, outcome)
           VALUES (%s, 'orders', %s, 'ChargeCard', %s, 'SUCCESS'),
                  (%s, 'orders', %s, 'ChargeCard', NULL, 'FAILED')""",
        [REPLY_QUEUE, uuid.uuid4(), ghost, REPLY_QUEUE, uuid.uuid4()],
    )
    async with saga_env(pool, schema, worker=False) as env:
        await wait_until(lambda: _no_replies(pool, schema), what="both replies handled")
        assert env.router is not None and env.router.stats["parked"] == 2
        parked = await env.repo.list_parked_replies(queue=REPLY_QUEUE)

    assert sorted(p.reason_code for p in parked) == ["UNKNOWN_PROCESS", "UNKNOWN_PROCESS"]
    by_corr = {p.correlation_id: p for p in parked}
    assert by_corr[ghost].reason == f"no process {ghost}"
    assert by_corr[None].reason == "the reply has no correlation_id"
    assert by_corr[None].outcome == ReplyOutcome.FAILED
    assert await env.repo.list_parked_replies(queue="elsewhere") == []


class GiftWrapSaga(BaseProcessManager[dict[str, Any], str]):
    """A one-step process type on the same reply queue as the order saga."""

    process_type = "gift_wrap"
    domain = SAGA_DOMAIN
    reply_queue = REPLY_QUEUE

    def create_initial_state(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"order_id": data["order_id"], "wrapped": False}

    def get_first_step(self, state: dict[str, Any]) -> str:
        return "WRAP"

    def build_command(self, step: str, state: dict[str, Any]) -> ProcessCommand:
        return ProcessCommand("ReserveStock", {"order_id": state["order_id"], "amount": 0})

    def update_state(self, state: dict[str, Any], step: str, reply: Reply) -> dict[str, Any]:
        return {**state, "wrapped": reply.outcome == ReplyOutcome.SUCCESS}

    def get_next_step(self, step: str, reply: Reply, state: dict[str, Any]) -> str | None:
        return None


async def test_a_reply_for_an_unknown_process_type_is_parked_then_retried(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema) as env:  # this router knows only the order saga
        gift = GiftWrapSaga(env.bus)
        process_id = await gift.start({"order_id": "g-1"})
        info = await env.wait_status(process_id, ProcessStatus.WAITING_FOR_TSQ)
        assert info.current_command_status is not None  # the command itself went fine
        (parked,) = await env.repo.list_parked_replies()
        assert parked.reason_code == "UNKNOWN_PROCESS_TYPE"
        assert "'gift_wrap'" in parked.reason and "order_fulfilment" in parked.reason
        assert parked.correlation_id == process_id
    trail = await env.repo.get_audit_trail(process_id)
    assert trail[-1].entry_type == "PARKED_REPLY"
    assert trail[-1].note is not None and trail[-1].note.startswith("UNKNOWN_PROCESS_TYPE")

    # Deploy a router that knows the type, and let the operator put the reply back.
    async with saga_env(pool, schema, worker=False, router=False) as env2:
        router = make_router(env2, managers=[env2.saga, GiftWrapSaga(env2.bus)])
        async with running_router(router):
            await env2.repo.retry_parked_reply(
                parked.parked_id, operator="alice", reason="gift_wrap deployed"
            )
            info = await env2.wait_status(process_id, ProcessStatus.COMPLETED)
    assert info.state == {"order_id": "g-1", "wrapped": True}
    assert await env2.repo.list_parked_replies() == []
    with pytest.raises(InvalidOperationError, match="no parked reply"):
        await env2.repo.retry_parked_reply(parked.parked_id, operator="alice")


class FlakySaga(OrderSaga):
    """Applying any reply for order 'boom' raises (a bug in user code, say)."""

    def update_state(self, state: OrderState, step: Step, reply: Reply) -> OrderState:
        if state.order_id == "boom":
            raise RuntimeError("state machine bug")
        return super().update_state(state, step, reply)


async def test_a_reply_whose_handling_keeps_failing_is_retried_then_parked(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema, router=False) as env:
        saga = FlakySaga(env.bus)
        process_id = await saga.start({"order_id": "boom", "amount": 1})
        fine_id = await saga.start({"order_id": "fine", "amount": 1})
        policy = RetryPolicy(max_attempts=3, backoff=(0,))
        async with running_router(make_router(env, managers=[saga], retry_policy=policy)) as r:
            info = await env.wait_status(process_id, ProcessStatus.WAITING_FOR_TSQ)
            await env.wait_status(fine_id, ProcessStatus.COMPLETED)
            stats = dict(r.stats)

    assert stats["retried"] == 2 and stats["parked"] == 1
    assert info.current_step == "RESERVE"
    assert info.current_command_status is not None
    (parked,) = await env.repo.list_parked_replies()
    assert parked.reason_code == "HANDLING_FAILED"
    assert parked.reason == "RuntimeError: state machine bug (after 3 attempts)"
    assert parked.traceback is not None and "state machine bug" in parked.traceback
    assert parked.read_count == 3
    assert await _replies_waiting(pool, schema) == 0
    await env.repo.discard_parked_reply(parked.parked_id, operator="bob", reason="redone")
    assert await env.repo.list_parked_replies() == []
    with pytest.raises(InvalidOperationError):
        await env.repo.discard_parked_reply(parked.parked_id, operator="bob", reason="again")


async def test_a_reply_leased_more_often_than_allowed_is_parked_without_handling(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema, router=False) as env:
        process_id = await env.start_order("p-1")
        await wait_until(lambda: _replies_waiting(pool, schema), what="the first reply")
        # Routers that died holding it (or overran the lease) used up its attempts.
        await execute(pool, schema, "UPDATE {schema}.replies SET read_ct = 3")
        policy = RetryPolicy(max_attempts=3, backoff=(0,))
        async with running_router(make_router(env, retry_policy=policy)):
            await env.wait_status(process_id, ProcessStatus.WAITING_FOR_TSQ)
    (parked,) = await env.repo.list_parked_replies()
    assert parked.reason_code == "ATTEMPTS_EXHAUSTED" and parked.read_count == 4


async def test_stop_right_after_starting_the_run_task_stops_it(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema, worker=False, router=False) as env:
        router = make_router(env)
        task = asyncio.create_task(router.run())
        await router.stop(timeout=1)
        await asyncio.wait_for(task, 2)  # on timeout, wait_for cancels the task: nothing leaks
        assert not router.running


async def test_stop_returns_while_a_read_waits_for_an_unreachable_server(
    database_url: str, pool: AsyncConnectionPool, schema: str
) -> None:
    """As for the worker: the pool's only connection is held elsewhere, as when the
    server is down; stop() must not wait for the pool's 30 s timeout."""
    async with (
        starved_pool(database_url) as starved,
        saga_env(starved, schema, worker=False, router=False) as env,
    ):
        router = make_router(env, concurrency=1, use_notify=False)
        task = asyncio.create_task(router.run())
        await asyncio.wait_for(router.ready.wait(), 5)
        started = time.monotonic()
        await asyncio.wait_for(router.stop(timeout=1), 10)
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 5
