"""A step whose command lands in the troubleshooting queue: WAITING_FOR_TSQ, then operators.

Retry resumes the process, cancel drives compensation of the completed steps, complete
continues with the next step. The worker knows nothing of processes: the status is
derived from the command's status when read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandStatus,
    PermanentCommandError,
    ProcessStatus,
    ReplyOutcome,
    TroubleshootingQueue,
)
from core._sagas import SAGA_DOMAIN, SagaEnv, Step, saga_env


async def _park_charge(
    env: SagaEnv, order_id: str
) -> tuple[uuid.UUID, uuid.UUID, Callable[[], None]]:
    """Start an order whose charge lands in the troubleshooting queue.

    Returns the process id, the parked command's id, and a function that fixes the gateway.
    """
    broken = [True]

    def gateway_down(command: Command) -> None:
        if broken[0]:
            raise PermanentCommandError("GATEWAY_DOWN", "payment gateway unreachable")

    env.script[("ChargeCard", order_id)] = gateway_down
    process_id = await env.start_order(order_id)
    info = await env.wait_status(process_id, ProcessStatus.WAITING_FOR_TSQ)
    assert info.current_step == Step.CHARGE
    assert info.current_command_status == CommandStatus.IN_TROUBLESHOOTING_QUEUE
    assert info.current_command_id is not None
    listed = await env.repo.list(SAGA_DOMAIN, status=ProcessStatus.WAITING_FOR_TSQ)
    assert [p.process_id for p in listed] == [process_id]
    assert await env.repo.list(SAGA_DOMAIN, status="WAITING_FOR_REPLY") == []

    def fix_gateway() -> None:
        broken[0] = False

    return process_id, info.current_command_id, fix_gateway


async def test_operator_retry_resumes_the_process(pool: AsyncConnectionPool, schema: str) -> None:
    tsq = TroubleshootingQueue(pool, schema=schema)
    async with saga_env(pool, schema) as env:
        process_id, command_id, fix_gateway = await _park_charge(env, "t-1")
        fix_gateway()
        await tsq.operator_retry(SAGA_DOMAIN, command_id, operator="alice")
        info = await env.repo.get(process_id)
        assert info is not None and info.status != ProcessStatus.WAITING_FOR_TSQ
        info = await env.wait_status(process_id, ProcessStatus.COMPLETED)

    assert env.state(info).log == ["RESERVE:SUCCESS", "CHARGE:SUCCESS", "SHIP:SUCCESS"]
    trail = await env.repo.get_audit_trail(process_id)
    assert [e.step for e in trail] == ["RESERVE", "CHARGE", "SHIP"]  # the same CHARGE command
    assert trail[1].command_id == command_id


async def test_operator_cancel_compensates_the_completed_steps(
    pool: AsyncConnectionPool, schema: str
) -> None:
    tsq = TroubleshootingQueue(pool, schema=schema)
    async with saga_env(pool, schema) as env:
        process_id, command_id, _ = await _park_charge(env, "t-2")
        await tsq.operator_cancel(
            SAGA_DOMAIN, command_id, reason="customer called off the order", operator="bob"
        )
        info = await env.wait_status(process_id, ProcessStatus.COMPENSATED)

    assert (info.error_code, info.error_message) == ("CANCELED", "customer called off the order")
    state = env.state(info)
    assert state.released and not state.refunded  # CHARGE never completed: nothing to refund
    trail = await env.repo.get_audit_trail(process_id)
    assert [(e.entry_type, e.step, e.reply_outcome) for e in trail] == [
        ("STEP", "RESERVE", ReplyOutcome.SUCCESS),
        ("STEP", "CHARGE", ReplyOutcome.CANCELED),
        ("COMPENSATION", "RELEASE", ReplyOutcome.SUCCESS),
    ]


async def test_operator_cancel_of_the_first_step_cancels_the_process(
    pool: AsyncConnectionPool, schema: str
) -> None:
    tsq = TroubleshootingQueue(pool, schema=schema)
    async with saga_env(pool, schema) as env:

        def broken(command: Command) -> None:
            raise PermanentCommandError("WAREHOUSE_DOWN", "warehouse offline")

        env.script[("ReserveStock", "t-3")] = broken
        process_id = await env.start_order("t-3")
        info = await env.wait_status(process_id, ProcessStatus.WAITING_FOR_TSQ)
        assert info.current_command_id is not None
        await tsq.operator_cancel(SAGA_DOMAIN, info.current_command_id, reason="duplicate order")
        info = await env.wait_status(process_id, ProcessStatus.CANCELED)

    assert (info.error_code, info.error_message) == ("CANCELED", "duplicate order")


async def test_operator_complete_continues_with_the_next_step(
    pool: AsyncConnectionPool, schema: str
) -> None:
    tsq = TroubleshootingQueue(pool, schema=schema)
    async with saga_env(pool, schema) as env:
        process_id, command_id, _ = await _park_charge(env, "t-4")
        result: dict[str, Any] = {"charge_id": "manual-charge-42"}
        await tsq.operator_complete(SAGA_DOMAIN, command_id, result=result, operator="carol")
        info = await env.wait_status(process_id, ProcessStatus.COMPLETED)

    state = env.state(info)
    assert state.charge_id == "manual-charge-42"  # the operator's result reached update_state
    assert state.tracking == "trk-t-4"
    assert [c for c, o in env.calls if o == "t-4"].count("ShipOrder") == 1
