"""A worker process for the crash tests: its handler says it started, then hangs.

Usage: python _crash_worker.py DATABASE_URL SCHEMA DOMAIN VISIBILITY_TIMEOUT STARTED_FILE

The handler appends the command id to STARTED_FILE, then blocks until the process is
killed (the test sends SIGKILL).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from commandbus import Command, HandlerContext, HandlerRegistry, Worker


async def main(url: str, schema: str, domain: str, lease: float, started: Path) -> None:
    registry = HandlerRegistry()

    @registry.handler(domain, "Crash")
    async def hang(command: Command, ctx: HandlerContext) -> None:
        with started.open("a") as f:
            f.write(f"{command.command_id} {ctx.attempt}\n")
        await asyncio.Event().wait()

    async with AsyncConnectionPool(url, min_size=1, max_size=4) as pool:
        worker = Worker(
            pool,
            domain=domain,
            registry=registry,
            concurrency=2,
            visibility_timeout=lease,
            poll_interval=0.05,
            schema=schema,
        )
        await worker.run()


if __name__ == "__main__":
    url, schema, domain, lease, started = sys.argv[1:6]
    asyncio.run(main(url, schema, domain, float(lease), Path(started)))
