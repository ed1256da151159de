"""A command that kills its worker parks only itself.

Its worker dies with other commands leased beside it; their leases expire together. Each
expired lease is then rescued on its own and run alone, and a lease that expired while
other commands ran in the same worker is not held against the command (it is
"forgiven"): the innocent ones complete, and only the killer uses up its attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from pathlib import Path

import pytest

from commandbus import CommandBus, CommandStatus, SendRequest
from core.helpers import DOMAIN, event_types

pytestmark = [pytest.mark.slow, pytest.mark.anyio]  # anyio: marked before parametrize

SCRIPT = Path(__file__).with_name("_suicide_worker.py")
LEASE = 0.5


async def _settled(bus: CommandBus, ids: list[uuid.UUID], killer: uuid.UUID) -> bool:
    for command_id in ids:
        meta = await bus.get_command(DOMAIN, command_id)
        assert meta is not None
        wanted = (
            CommandStatus.IN_TROUBLESHOOTING_QUEUE
            if command_id == killer
            else CommandStatus.COMPLETED
        )
        if meta.status != wanted:
            return False
    return True


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_only_the_command_that_kills_its_worker_is_parked(
    bus: CommandBus, database_url: str, schema: str, flavour: str
) -> None:
    killer = uuid.uuid4()
    innocents = [uuid.uuid4() for _ in range(9)]
    requests = [SendRequest(DOMAIN, "Suicide", killer, {}, max_attempts=3)] + [
        SendRequest(DOMAIN, "Innocent", i, {}, max_attempts=3) for i in innocents
    ]
    await bus.send_batch(requests)  # one batch: the first worker leases them together

    everyone = [*innocents, killer]
    deaths = 0
    deadline = asyncio.get_running_loop().time() + 60
    while not await _settled(bus, everyone, killer):
        assert asyncio.get_running_loop().time() < deadline, f"not settled after {deaths} deaths"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            database_url,
            schema,
            DOMAIN,
            str(LEASE),
            flavour,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            while proc.returncode is None:
                if await _settled(bus, everyone, killer):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 0.1)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            else:
                deaths += 1
                _, err = await proc.communicate()
                assert proc.returncode == -9, err.decode()  # killed by its handler only

    for command_id in innocents:
        meta = await bus.get_command(DOMAIN, command_id)
        assert meta is not None and meta.status == CommandStatus.COMPLETED
    parked = await bus.get_command(DOMAIN, killer)
    assert parked is not None and parked.last_error_code == "ATTEMPTS_EXHAUSTED"
    # Forgiven once (it died beside the innocents), then three deaths alone.
    assert deaths == 4
    trail = await event_types(bus, killer)
    assert trail == ["SENT"] + ["RECEIVED"] * 5 + ["MOVED_TO_TROUBLESHOOTING_QUEUE"]
