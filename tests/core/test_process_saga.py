"""Process managers end to end: a real Worker executes the steps, the router applies replies.

A three-step saga completes; a business-rule "no" compensates the completed steps in
reverse order; compensation is itself commands, so the process stays COMPENSATING until
their replies arrive; start() is atomic and joins the caller's transaction.
"""

from __future__ import annotations

import asyncio
import uuid

from psycopg_pool import AsyncConnectionPool

from commandbus import BusinessRuleError, Command, CommandStatus, ProcessStatus, ReplyOutcome
from core._sagas import REPLY_QUEUE, SAGA_DOMAIN, Step, saga_env
from core.helpers import execute, wait_for_event


async def test_three_step_process_completes_end_to_end(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema) as env:
        process_id = await env.start_order("o-1", 250)
        info = await env.wait_status(process_id, ProcessStatus.COMPLETED)

    state = env.state(info)
    assert (state.reservation, state.charge_id, state.tracking) == ("res-o-1", "ch-o-1", "trk-o-1")
    assert state.log == ["RESERVE:SUCCESS", "CHARGE:SUCCESS", "SHIP:SUCCESS"]
    assert info.completed_steps == ["RESERVE", "CHARGE", "SHIP"]
    assert info.domain == SAGA_DOMAIN and info.process_type == "order_fulfilment"
    assert info.current_step == "SHIP" and info.completed_at is not None
    assert info.error_code is None

    trail = await env.repo.get_audit_trail(process_id)
    assert [(e.entry_type, e.step, e.reply_outcome) for e in trail] == [
        ("STEP", "RESERVE", ReplyOutcome.SUCCESS),
        ("STEP", "CHARGE", ReplyOutcome.SUCCESS),
        ("STEP", "SHIP", ReplyOutcome.SUCCESS),
    ]
    for entry in trail:
        assert entry.sent_at is not None and entry.received_at is not None
        assert entry.sent_at <= entry.received_at
        assert entry.command_data == {"order_id": "o-1", "amount": 250}
        assert entry.reply_data is not None
        assert entry.command_id is not None
        command = await env.bus.get_command(SAGA_DOMAIN, entry.command_id)
        assert command is not None and command.status == CommandStatus.COMPLETED
        assert command.correlation_id == process_id and command.reply_to == REPLY_QUEUE
    assert env.router is not None and env.router.stats["applied"] == 3
    assert await execute(pool, schema, "SELECT count(*) FROM {schema}.replies") == [(0,)]


async def test_business_rule_failure_compensates_completed_steps_in_reverse(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema) as env:

        def out_of_stock(command: Command) -> None:
            raise BusinessRuleError("NOT_SHIPPABLE", "the courier refused the parcel")

        env.script[("ShipOrder", "o-2")] = out_of_stock
        process_id = await env.start_order("o-2")
        info = await env.wait_status(process_id, ProcessStatus.COMPENSATED)

    assert info.error_code == "NOT_SHIPPABLE"
    assert info.error_message == "the courier refused the parcel"
    state = env.state(info)
    assert state.refunded and state.released and state.tracking is None
    trail = await env.repo.get_audit_trail(process_id)
    assert [(e.entry_type, e.step, e.reply_outcome) for e in trail] == [
        ("STEP", "RESERVE", ReplyOutcome.SUCCESS),
        ("STEP", "CHARGE", ReplyOutcome.SUCCESS),
        ("STEP", "SHIP", ReplyOutcome.FAILED),
        ("COMPENSATION", "REFUND", ReplyOutcome.SUCCESS),
        ("COMPENSATION", "RELEASE", ReplyOutcome.SUCCESS),
    ]
    failed = trail[2]
    assert (failed.error_code, failed.error_message) == (
        "NOT_SHIPPABLE",
        "the courier refused the parcel",
    )
    # The handlers ran in that order too.
    assert [c for c, o in env.calls if o == "o-2"] == [
        "ReserveStock",
        "ChargeCard",
        "ShipOrder",
        "RefundCard",
        "ReleaseStock",
    ]


async def test_failure_of_the_first_step_fails_the_process_with_nothing_to_compensate(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema) as env:

        def no_stock(command: Command) -> None:
            raise BusinessRuleError("OUT_OF_STOCK", "nothing left", {"sku": "X"})

        env.script[("ReserveStock", "o-3")] = no_stock
        process_id = await env.start_order("o-3")
        info = await env.wait_status(process_id, ProcessStatus.FAILED)

    assert (info.error_code, info.error_message) == ("OUT_OF_STOCK", "nothing left")
    assert info.completed_steps == []
    trail = await env.repo.get_audit_trail(process_id)
    assert [(e.step, e.reply_outcome, e.error_code) for e in trail] == [
        ("RESERVE", ReplyOutcome.FAILED, "OUT_OF_STOCK")
    ]


async def test_process_stays_compensating_until_the_compensation_replies_arrive(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema) as env:
        refund_started = asyncio.Event()
        refund_may_finish = asyncio.Event()

        async def slow_refund(command: Command) -> None:
            refund_started.set()
            await refund_may_finish.wait()

        def declined(command: Command) -> None:
            raise BusinessRuleError("NOT_SHIPPABLE", "no courier")

        env.script[("ShipOrder", "o-4")] = declined
        env.script[("RefundCard", "o-4")] = slow_refund
        process_id = await env.start_order("o-4")
        await wait_for_event(refund_started, what="the refund handler to start")
        info = await env.repo.get(process_id)
        assert info is not None
        assert info.status == ProcessStatus.COMPENSATING
        assert info.current_step == Step.REFUND
        assert info.compensation_steps == ["RELEASE"]
        assert info.current_command_status == CommandStatus.IN_PROGRESS
        refund_may_finish.set()
        info = await env.wait_status(process_id, ProcessStatus.COMPENSATED)
        assert info.compensation_steps == []


async def test_a_failed_compensation_fails_the_process_and_keeps_what_was_not_undone(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema) as env:

        def declined(command: Command) -> None:
            raise BusinessRuleError("NOT_SHIPPABLE", "no courier")

        def refund_refused(command: Command) -> None:
            raise BusinessRuleError("REFUND_REFUSED", "the bank refused the refund")

        env.script[("ShipOrder", "o-5")] = declined
        env.script[("RefundCard", "o-5")] = refund_refused
        process_id = await env.start_order("o-5")
        info = await env.wait_status(process_id, ProcessStatus.FAILED)

    assert info.error_code == "REFUND_REFUSED"
    assert info.error_message == "compensation step REFUND failed: the bank refused the refund"
    assert info.compensation_steps == ["RELEASE"]  # never ran: an operator must look


async def test_start_is_atomic_with_the_callers_transaction(
    pool: AsyncConnectionPool, schema: str
) -> None:
    async with saga_env(pool, schema, worker=False, router=False) as env:
        async with pool.connection() as conn:
            async with conn.transaction(force_rollback=True):
                rolled_back = await env.saga.start({"order_id": "rb", "amount": 1}, conn=conn)
            async with conn.transaction():
                committed = await env.saga.start({"order_id": "ok", "amount": 1}, conn=conn)

        assert await env.repo.get(rolled_back) is None
        info = await env.repo.get(committed)
        assert info is not None and info.status == ProcessStatus.WAITING_FOR_REPLY
        assert info.current_command_status == CommandStatus.PENDING
        commands = await execute(
            pool, schema, "SELECT correlation_id FROM {schema}.commands ORDER BY created_at"
        )
        assert commands == [(committed,)]
        assert await env.repo.list(SAGA_DOMAIN) == [info]
        assert await env.repo.get(uuid.uuid4()) is None
