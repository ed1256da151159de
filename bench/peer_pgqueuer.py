"""PgQueuer 1.6 for bench/peers.py: one measurement in a fresh database, printed as JSON.

    python bench/peer_pgqueuer.py {send,batch,process,latency,send_process} --url URL [-n N]

PgQueuer's own driver, asyncpg. PgQueuer writes one row per job and deletes it when the
job is done, logging the status change to ``pgqueuer_log``; commandbus keeps the command
record and its audit trail. Entrypoints must be ``async def`` (PgQueuer rejects plain
functions), so there is no plain-def figure. The ``peers`` hatch environment installs
PgQueuer and asyncpg for the benches only: neither is a dependency of commandbus.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from pgqueuer import PgQueuer  # type: ignore[import-not-found]
from pgqueuer.db import AsyncpgDriver  # type: ignore[import-not-found]
from pgqueuer.queries import Queries  # type: ignore[import-not-found]
from pgqueuer.types import QueueExecutionMode  # type: ignore[import-not-found]
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).parent))

from _peer_harness import (
    BATCH,
    DATA,
    Meter,
    enqueue_setup,
    idle_latency,
    main,
    wait_for_count,
    wait_until_empty,
)

PAYLOAD = json.dumps(DATA).encode()


def batch_size(concurrency: int) -> int:
    """Jobs per dequeue: PgQueuer wants max_concurrent_tasks >= 2 * batch_size."""
    return max(1, min(50, concurrency // 2))


class PgQueuerPeer:
    schema = "public"
    package = "pgqueuer"

    def __init__(self, url: str) -> None:
        self.url = url

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(_asyncpg_dsn(self.url))

    async def install(self) -> None:
        conn = await self.connect()
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    def settings(self, shape: str, concurrency: int) -> str:
        if shape == "send":
            return "Queries.enqueue(one job) in a loop, one asyncpg connection"
        if shape == "batch":
            return f"Queries.enqueue(lists of {BATCH:,}), one asyncpg connection"
        if shape == "process":
            return (
                f"QueueManager.run(mode=drain, max_concurrent_tasks={concurrency}, "
                f"batch_size={batch_size(concurrency)}), async entrypoint, asyncpg"
            )
        if shape == "process_plain":
            return "n/a: entrypoints must be async def"
        if shape == "send_process":
            return (
                "Queries.enqueue(one job) in a loop, one asyncpg connection, in one process; "
                f"QueueManager.run(max_concurrent_tasks={concurrency}, "
                f"batch_size={batch_size(concurrency)}), LISTEN/NOTIFY, async entrypoint, "
                "in another; done = all handled and the pgqueuer table empty"
            )
        return (
            "QueueManager.run(batch_size=2, max_concurrent_tasks=4), LISTEN/NOTIFY, "
            "one asyncpg connection"
        )

    async def send(self, n: int, meter: Meter) -> None:
        conn = await self.connect()
        try:
            queries = Queries(AsyncpgDriver(conn))
            await meter.wait_for_go()
            with meter.measure(n):
                for _ in range(n):
                    await queries.enqueue("noop", PAYLOAD, 0)
        finally:
            await conn.close()

    async def batch(self, n: int, meter: Meter) -> None:
        conn = await self.connect()
        try:
            queries = Queries(AsyncpgDriver(conn))
            sizes = [min(BATCH, n - start) for start in range(0, n, BATCH)]
            with meter.measure(n):
                for size in sizes:
                    await queries.enqueue(["noop"] * size, [PAYLOAD] * size, [0] * size)
        finally:
            await conn.close()

    async def process(self, n: int, concurrency: int, plain: bool, meter: Meter) -> None:
        if plain:
            raise SystemExit("PgQueuer entrypoints must be async def")
        conn = await self.connect()
        try:
            queries = Queries(AsyncpgDriver(conn))
            await enqueue_setup(
                self.url,
                n,
                lambda size: queries.enqueue(["noop"] * size, [PAYLOAD] * size, [0] * size),
            )
            worker_conn = await self.connect()
            try:
                pgq = PgQueuer(AsyncpgDriver(worker_conn))

                @pgq.entrypoint("noop")
                async def noop(job: object) -> None:
                    return None

                with meter.measure(n):
                    await pgq.qm.run(
                        batch_size=batch_size(concurrency),
                        max_concurrent_tasks=concurrency,
                        mode=QueueExecutionMode.drain,
                    )
            finally:
                await worker_conn.close()
            left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
            if left:
                raise RuntimeError(f"PgQueuer drain left {left} jobs")
        finally:
            await conn.close()

    async def send_process(
        self, n: int, concurrency: int, go: Callable[[], Awaitable[None]], meter: Meter
    ) -> None:
        worker_conn = await self.connect()
        pgq = PgQueuer(AsyncpgDriver(worker_conn))
        handled = 0

        @pgq.entrypoint("noop")
        async def noop(job: object) -> None:
            nonlocal handled
            handled += 1

        task = asyncio.create_task(
            pgq.qm.run(batch_size=batch_size(concurrency), max_concurrent_tasks=concurrency)
        )
        try:
            await asyncio.sleep(0.5)  # let it start listening: run() offers no ready event
            with meter.measure(n):
                await go()
                await wait_for_count(lambda: handled, n)
                # Done jobs leave the table when the status buffer flushes (<= 0.1 s).
                await wait_until_empty(self.url, "SELECT count(*) FROM pgqueuer")
        finally:
            pgq.shutdown.set()
            await asyncio.wait_for(task, 10)
            await worker_conn.close()

    async def latency(self, samples: int, meter: Meter) -> list[float]:
        conn = await self.connect()
        worker_conn = await self.connect()
        pgq = PgQueuer(AsyncpgDriver(worker_conn))
        stamps: list[float] = []
        arrived = asyncio.Event()

        @pgq.entrypoint("ping")
        async def ping(job: object) -> None:
            stamps.append(time.perf_counter())
            arrived.set()

        task = asyncio.create_task(pgq.qm.run(batch_size=2, max_concurrent_tasks=4))
        try:
            queries = Queries(AsyncpgDriver(conn))
            await asyncio.sleep(0.5)  # let it start listening: run() offers no ready event
            return await idle_latency(
                samples, lambda: queries.enqueue("ping", PAYLOAD, 0), arrived, stamps, meter
            )
        finally:
            pgq.shutdown.set()
            await asyncio.wait_for(task, 10)
            await worker_conn.close()
            await conn.close()


def _asyncpg_dsn(url: str) -> str:
    """asyncpg takes URLs only; build one from any libpq conninfo."""
    params = conninfo_to_dict(url)
    host = params.get("host", "localhost")
    port = params.get("port", "5432")
    user = params.get("user", "postgres")
    dbname = params.get("dbname", "postgres")
    if str(host).startswith("/"):
        return f"postgresql://{user}@/{dbname}?host={host}&port={port}"
    return f"postgresql://{user}@{host}:{port}/{dbname}"


if __name__ == "__main__":
    main("pgqueuer", PgQueuerPeer)
