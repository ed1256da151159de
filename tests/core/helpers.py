"""Helpers of the worker tests: wait with a deadline, run a worker for a block, read state.

Nothing here sleeps to synchronise: every wait polls a condition until a deadline and
fails with a message saying what never happened.
"""

# Deadlines are what these helpers are for, so they take ``timeout`` arguments.

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    CommandBus,
    CommandMetadata,
    CommandStatus,
    HandlerRegistry,
    RetryPolicy,
    Worker,
)

T = TypeVar("T")

DOMAIN = "orders"
#: A retry policy that retries at once, so retry tests take milliseconds.
NO_BACKOFF = RetryPolicy(backoff=(0,))


async def wait_until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 10,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until it returns something truthy; return it, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_for_event(event: asyncio.Event, *, timeout: float = 10, what: str = "event") -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def wait_for_status(
    bus: CommandBus,
    domain: str,
    command_id: uuid.UUID,
    status: CommandStatus | str,
    *,
    timeout: float = 10,
) -> CommandMetadata:
    """Wait until the command reaches ``status``; return its metadata then."""
    last: list[CommandMetadata | None] = [None]

    async def probe() -> CommandMetadata | None:
        last[0] = await bus.get_command(domain, command_id)
        return last[0] if last[0] is not None and last[0].status == status else None

    try:
        return await wait_until(probe, timeout=timeout)
    except AssertionError:
        seen = None if last[0] is None else (last[0].status, last[0].attempts)
        raise AssertionError(
            f"command {command_id} did not reach {status} within {timeout}s; "
            f"last seen (status, attempts) = {seen}"
        ) from None


async def wait_for_count(
    pool: AsyncConnectionPool,
    schema: str,
    status: CommandStatus,
    n: int,
    *,
    timeout: float = 10,
) -> None:
    """Wait until ``n`` commands (all domains) have ``status``."""

    async def probe() -> bool:
        return await count_status(pool, schema, status) >= n

    await wait_until(probe, timeout=timeout, what=f"{n} commands in {status}")


async def count_status(pool: AsyncConnectionPool, schema: str, status: CommandStatus) -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE status = %s").format(
        sql.Identifier(schema, "commands")
    )
    async with pool.connection() as conn:
        row = await (await conn.execute(query, [status.value])).fetchone()
    assert row is not None
    return int(row[0])


async def queue_messages(pool: AsyncConnectionPool, schema: str, command_id: uuid.UUID) -> int:
    """Whether a command is queued: pending or leased (0 once its outcome is final)."""
    query = sql.SQL(
        "SELECT count(*) FROM {} WHERE command_id = %s AND status IN ('PENDING', 'IN_PROGRESS')"
    ).format(sql.Identifier(schema, "commands"))
    async with pool.connection() as conn:
        row = await (await conn.execute(query, [command_id])).fetchone()
    assert row is not None
    return int(row[0])


async def event_types(bus: CommandBus, command_id: uuid.UUID) -> list[str]:
    return [e.event_type for e in await bus.get_audit_trail(command_id)]


async def execute(
    pool: AsyncConnectionPool, schema: str, statement: str, params: Any = None
) -> Any:
    """Run ``statement`` with ``{schema}`` replaced by the quoted schema; return all rows."""
    query = sql.SQL(statement).format(schema=sql.Identifier(schema))
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else None


def make_worker(
    pool: AsyncConnectionPool,
    schema: str,
    registry: HandlerRegistry,
    *,
    domain: str = DOMAIN,
    **options: Any,
) -> Worker:
    """A worker tuned for tests: short poll interval, immediate retries."""
    options.setdefault("poll_interval", 0.05)
    options.setdefault("retry_policy", NO_BACKOFF)
    options.setdefault("concurrency", 4)
    return Worker(pool, domain=domain, registry=registry, schema=schema, **options)


async def start(worker: Worker, *, timeout: float = 10) -> asyncio.Task[None]:
    """Start ``worker.run()`` and wait until it is ready (surfacing a start-up error)."""
    task = asyncio.create_task(worker.run())
    ready = asyncio.create_task(worker.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when="FIRST_COMPLETED")
    if ready not in done:
        ready.cancel()
        if task in done:
            task.result()  # raises the start-up error
        raise AssertionError(f"worker not ready within {timeout}s")
    return task


@asynccontextmanager
async def running(worker: Worker, *, stop_timeout: float = 5) -> AsyncIterator[Worker]:
    """Run ``worker`` for the duration of the block, then stop it and check it ended."""
    task = await start(worker)
    try:
        yield worker
    finally:
        await asyncio.wait_for(worker.stop(stop_timeout), stop_timeout + 10)
        await asyncio.wait_for(task, 10)


@asynccontextmanager
async def starved_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A one-connection pool whose connection is held elsewhere: to the library, waiting
    for it looks like a server that is down."""
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False)
    await pool.open()
    try:
        held = await pool.getconn()
        try:
            yield pool
        finally:
            await pool.putconn(held)
    finally:
        await pool.close()
