"""A worker process whose "Suicide" handler SIGKILLs its own process; others succeed.

Usage: python _suicide_worker.py DATABASE_URL SCHEMA DOMAIN VISIBILITY_TIMEOUT async|sync

"Innocent" handlers return at once. Run async (``Worker``) or sync (``SyncWorker`` with
plain-``def`` handlers); either way the process dies when it runs "Suicide".
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from psycopg_pool import AsyncConnectionPool

from commandbus import Command, HandlerContext, HandlerRegistry, Worker


def registry_for(domain: str, *, plain: bool) -> HandlerRegistry:
    registry = HandlerRegistry()

    def die(command: Command, ctx: HandlerContext) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def innocent(command: Command, ctx: HandlerContext) -> dict[str, int]:
        return {"attempt": ctx.attempt}

    async def die_async(command: Command, ctx: HandlerContext) -> None:
        die(command, ctx)

    async def innocent_async(command: Command, ctx: HandlerContext) -> dict[str, int]:
        return innocent(command, ctx)

    registry.register(domain, "Suicide", die if plain else die_async)
    registry.register(domain, "Innocent", innocent if plain else innocent_async)
    return registry


SETTINGS = {"concurrency": 10, "poll_interval": 0.05}


async def run_async(url: str, schema: str, domain: str, lease: float) -> None:
    async with AsyncConnectionPool(url, min_size=1, max_size=14) as pool:
        registry = registry_for(domain, plain=False)
        worker = Worker(
            pool,
            domain=domain,
            registry=registry,
            visibility_timeout=lease,
            schema=schema,
            **SETTINGS,  # type: ignore[arg-type]
        )
        await worker.run()


def run_sync(url: str, schema: str, domain: str, lease: float) -> None:
    from commandbus_sync import SyncWorker

    worker = SyncWorker(
        conninfo=url,
        domain=domain,
        registry=registry_for(domain, plain=True),
        visibility_timeout=lease,
        schema=schema,
        pool_kwargs={"max_size": 14},
        **SETTINGS,  # type: ignore[arg-type]
    )
    worker.run()


if __name__ == "__main__":
    url, schema, domain, lease, kind = sys.argv[1:6]
    if kind == "sync":
        run_sync(url, schema, domain, float(lease))
    else:
        asyncio.run(run_async(url, schema, domain, float(lease)))
