"""Reply queues: outcomes land in the queue named by ``reply_to``; readers lease, then ack.

A leased reply is invisible to other readers until its lease ends; an ack or release
only counts while the lease is still the reader's own (same ``read_count``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BusinessRuleError,
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    Reply,
    ReplyOutcome,
    ReplyQueue,
    ValidationError,
    read_replies,
)
from core.helpers import DOMAIN, make_worker, running, wait_for_status, wait_until

QUEUE = "checkout-replies"


async def _complete(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, replies: Sequence[str | None]
) -> list[uuid.UUID]:
    """One command per entry, completed (or FAILED when its data says so), replying there."""
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Do")
    async def do(command: Command, ctx: HandlerContext) -> dict[str, int]:
        if command.data["fail"]:
            raise BusinessRuleError("NOPE", "refused")
        return {"k": command.data["k"]}

    ids = []
    async with running(make_worker(pool, schema, registry, concurrency=1)):
        for k, reply_to in enumerate(replies):
            command_id = uuid.uuid4()
            await bus.send(
                DOMAIN, "Do", command_id, {"k": k, "fail": k % 3 == 2}, reply_to=reply_to
            )
            await wait_for_status(
                bus,
                DOMAIN,
                command_id,
                CommandStatus.FAILED if k % 3 == 2 else CommandStatus.COMPLETED,
            )
            ids.append(command_id)
    return ids


async def test_read_leases_replies_in_order_and_ack_removes_them(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    ids = await _complete(pool, bus, schema, [QUEUE, QUEUE, QUEUE])
    queue = ReplyQueue(pool, QUEUE, schema=schema)

    replies = await queue.read(limit=10)
    assert [r.command_id for r in replies] == ids
    assert [r.outcome for r in replies] == [
        ReplyOutcome.SUCCESS,
        ReplyOutcome.SUCCESS,
        ReplyOutcome.FAILED,
    ]
    assert [r.result for r in replies] == [{"k": 0}, {"k": 1}, None]
    assert (replies[2].error_code, replies[2].error_message) == ("NOPE", "refused")
    assert all(r.queue == QUEUE and r.read_count == 1 for r in replies)
    assert all(r.created_at is not None for r in replies)

    assert await queue.read() == []  # leased: invisible to everyone else
    for reply in replies:
        assert await queue.ack(reply) is True
    assert await queue.ack(replies[0]) is False  # already gone


async def test_limit_and_queues_are_separate(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    ids = await _complete(pool, bus, schema, [QUEUE, "elsewhere", QUEUE, None])
    queue = ReplyQueue(pool, QUEUE, schema=schema)
    (first,) = await queue.read(limit=1)
    (second,) = await queue.read(limit=1)
    assert [first.command_id, second.command_id] == [ids[0], ids[2]]
    assert await queue.read() == []
    (other,) = await ReplyQueue(pool, "elsewhere", schema=schema).read()
    assert other.command_id == ids[1]


async def test_an_unacked_reply_comes_back_after_its_lease_and_the_stale_ack_fails(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    await _complete(pool, bus, schema, [QUEUE])
    queue = ReplyQueue(pool, QUEUE, schema=schema, visibility_timeout=0.2)
    (stale,) = await queue.read()

    async def redelivered() -> list[Reply]:
        return await queue.read()

    (again,) = await wait_until(redelivered, timeout=5, what="the lease to expire")
    assert again.msg_id == stale.msg_id and again.read_count == 2
    assert await queue.ack(stale) is False  # the lease moved on to the second reader
    assert await queue.release(stale) is False
    assert await queue.ack(again) is True


async def test_release_gives_a_reply_back_now_or_after_a_delay(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    await _complete(pool, bus, schema, [QUEUE])
    queue = ReplyQueue(pool, QUEUE, schema=schema)
    (reply,) = await queue.read()
    assert await queue.release(reply) is True
    (again,) = await queue.read()
    assert again.read_count == 2

    assert await queue.release(again, delay=30) is True
    assert await queue.read() == []  # back, but not visible for another 30 seconds


async def test_ack_in_the_callers_transaction_rolls_back_with_it(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    await _complete(pool, bus, schema, [QUEUE])
    queue = ReplyQueue(pool, QUEUE, schema=schema)
    (reply,) = await queue.read(visibility_timeout=0.1)
    async with pool.connection() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                assert await queue.ack(reply, conn=conn) is True
                raise RuntimeError("the caller's own work failed")

    async def back() -> list[Reply]:
        return await queue.read()

    (again,) = await wait_until(back, timeout=5, what="the reply to be visible again")
    assert again.msg_id == reply.msg_id


async def test_read_replies_is_a_one_shot_read(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    (command_id,) = await _complete(pool, bus, schema, [QUEUE])
    (reply,) = await read_replies(pool, QUEUE, schema=schema, visibility_timeout=5)
    assert reply.command_id == command_id and reply.domain == DOMAIN
    assert await read_replies(pool, QUEUE, schema=schema) == []


async def test_a_reply_notifies_the_queues_channel(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, database_url: str
) -> None:
    queue = ReplyQueue(pool, QUEUE, schema=schema)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute(
            psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(queue.channel))
        )
        await _complete(pool, bus, schema, [QUEUE])
        notice = await asyncio.wait_for(anext(aiter(listener.notifies())), 5)
    assert notice.channel == queue.channel


async def test_bad_read_and_release_arguments_are_rejected(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str
) -> None:
    with pytest.raises(ValidationError):
        ReplyQueue(pool, QUEUE, schema=schema, visibility_timeout=0)
    with pytest.raises(ValidationError):
        ReplyQueue(pool, "bad queue", schema=schema)
    await _complete(pool, bus, schema, [QUEUE])
    queue = ReplyQueue(pool, QUEUE, schema=schema)
    for bad in (0, -1, 10_001):
        with pytest.raises(ValidationError):
            await queue.read(limit=bad)
    with pytest.raises(ValidationError):
        await queue.read(visibility_timeout=-5)
    (reply,) = await queue.read()  # nothing above leased it
    with pytest.raises(ValidationError):
        await queue.release(reply, delay=-1)
    assert await queue.ack(reply) is True
