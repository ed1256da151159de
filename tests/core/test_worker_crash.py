"""A worker process killed mid-handler (SIGKILL) loses nothing: the lease expires and
another worker takes the command. A command that kills every worker that runs it is a
poison message: it reaches the troubleshooting queue once its attempts are used up.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import Command, CommandBus, CommandStatus, HandlerContext, HandlerRegistry
from core.helpers import DOMAIN, execute, make_worker, running, wait_for_status, wait_until

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("_crash_worker.py")
LEASE = 0.5


class DoomedWorker:
    """A worker in a child process whose handler hangs until we kill the process."""

    def __init__(self, proc: asyncio.subprocess.Process, started: Path) -> None:
        self.proc = proc
        self.started = started

    async def wait_started(self, command_id: uuid.UUID) -> None:
        async def probe() -> bool:
            if self.proc.returncode is not None:
                _, err = await self.proc.communicate()
                raise AssertionError(f"worker process exited early:\n{err.decode()}")
            return self.started.exists() and str(command_id) in self.started.read_text()

        await wait_until(probe, timeout=20, what="the child worker's handler to start")

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(self.proc.wait(), 10) == -signal.SIGKILL


@pytest.fixture
async def doomed(
    database_url: str, schema: str, pool: AsyncConnectionPool, tmp_path: Path
) -> AsyncIterator[DoomedWorker]:
    started = tmp_path / "started.txt"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        database_url,
        schema,
        DOMAIN,
        str(LEASE),
        str(started),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield DoomedWorker(proc, started)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _lease_expiry(pool: AsyncConnectionPool, schema: str, command_id: uuid.UUID) -> float:
    rows = await execute(
        pool,
        schema,
        "SELECT extract(epoch FROM vt)::float8 FROM {schema}.commands WHERE command_id = %s",
        [command_id],
    )
    return float(rows[0][0])


async def test_a_command_of_a_killed_worker_is_completed_by_another_after_the_lease(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, doomed: DoomedWorker
) -> None:
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Crash", command_id, {}, max_attempts=3)
    await doomed.wait_started(command_id)
    meta = await bus.get_command(DOMAIN, command_id)
    assert meta is not None and (meta.status, meta.attempts) == (CommandStatus.IN_PROGRESS, 1)
    lease_ends = await _lease_expiry(pool, schema, command_id)
    await doomed.kill()

    taken_at: list[float] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Crash")
    async def survive(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        taken_at.append(time.time())
        return {"attempt": ctx.attempt}

    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)

    assert meta.result == {"attempt": 2} and meta.attempts == 2
    (taken,) = taken_at
    assert taken >= lease_ends - 0.05  # not before the dead worker's lease ran out
    trail = await bus.get_audit_trail(command_id)
    assert [e.event_type for e in trail] == ["SENT", "RECEIVED", "RECEIVED", "COMPLETED"]
    first, second = trail[1].details["worker"], trail[2].details["worker"]
    assert first != second


async def test_a_command_that_kills_its_worker_every_time_ends_in_troubleshooting(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, doomed: DoomedWorker
) -> None:
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Crash", command_id, {}, max_attempts=1)
    await doomed.wait_started(command_id)
    await doomed.kill()

    ran: list[uuid.UUID] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Crash")
    async def would_crash_again(command: Command, ctx: HandlerContext) -> None:
        ran.append(command.command_id)

    async with running(make_worker(pool, schema, registry)):
        meta = await wait_for_status(
            bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE
        )
    assert ran == []  # its one attempt was used up by the crash
    assert meta.last_error_code == "ATTEMPTS_EXHAUSTED"
