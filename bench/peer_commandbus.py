"""commandbus for bench/peers.py: one measurement in a fresh database, printed as JSON.

    python bench/peer_commandbus.py {send,batch,process,process_plain,latency,send_process}
        --url URL

Public API only: CommandBus, SendRequest, Worker, HandlerRegistry, migrate.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).parent))

from _peer_harness import BATCH, DATA, Meter, enqueue_setup, idle_latency, main, wait_for_count
from commandbus import CommandBus, HandlerRegistry, SendRequest, Worker, migrate

DOMAIN = "bench"
SCHEMA = "commandbus"


class Commandbus:
    schema = SCHEMA
    package = "commandbus-core"

    def __init__(self, url: str) -> None:
        self.url = url

    def pool(self, size: int) -> AsyncConnectionPool:
        return AsyncConnectionPool(self.url, min_size=size, max_size=size, open=False)

    async def install(self) -> None:
        async with self.pool(1) as pool:
            await migrate(pool, schema=SCHEMA)

    def settings(self, shape: str, concurrency: int) -> str:
        if shape == "send":
            return "bus.send() in a loop, pool of 1"
        if shape == "batch":
            return f"bus.send_batch() of {BATCH:,}, pool of 1"
        if shape in ("process", "process_plain"):
            kind = "def" if shape == "process_plain" else "async def"
            return (
                f"Worker(concurrency={concurrency}), {kind} handler, pool of "
                f"{concurrency + 4}, done = worker.stats['completed'] (after commit)"
            )
        if shape == "send_process":
            return (
                "bus.send() in a loop, pool of 1, in one process; "
                f"Worker(concurrency={concurrency}), LISTEN/NOTIFY, async def handler, "
                f"pool of {concurrency + 4}, in another; done = worker.stats['completed']"
            )
        return "Worker(concurrency=4, poll_interval=5), LISTEN/NOTIFY, pool of 8"

    async def send(self, n: int, meter: Meter) -> None:
        ids = [uuid.uuid4() for _ in range(n)]
        async with self.pool(1) as pool:
            bus = CommandBus(pool, schema=SCHEMA)
            await meter.wait_for_go()
            with meter.measure(n):
                for command_id in ids:
                    await bus.send(DOMAIN, "PlaceOrder", command_id, DATA)

    async def batch(self, n: int, meter: Meter) -> None:
        batches = [
            [
                SendRequest(DOMAIN, "PlaceOrder", uuid.uuid4(), DATA)
                for _ in range(min(BATCH, n - start))
            ]
            for start in range(0, n, BATCH)
        ]
        async with self.pool(1) as pool:
            bus = CommandBus(pool, schema=SCHEMA)
            with meter.measure(n):
                for requests in batches:
                    await bus.send_batch(requests)

    async def process(self, n: int, concurrency: int, plain: bool, meter: Meter) -> None:
        async with self.pool(concurrency + 4) as pool:
            bus = CommandBus(pool, schema=SCHEMA)
            await enqueue_setup(
                self.url,
                n,
                lambda size: bus.send_batch(
                    [SendRequest(DOMAIN, "Noop", uuid.uuid4(), DATA) for _ in range(size)]
                ),
            )
            registry = HandlerRegistry()
            if plain:

                @registry.handler(DOMAIN, "Noop")
                def noop(command: object, context: object) -> None:
                    return None

            else:

                @registry.handler(DOMAIN, "Noop")
                async def async_noop(command: object, context: object) -> None:
                    return None

            worker = Worker(
                pool, domain=DOMAIN, registry=registry, concurrency=concurrency, schema=SCHEMA
            )
            with meter.measure(n):
                task = asyncio.create_task(worker.run())
                await wait_for_count(lambda: worker.stats["completed"], n)
            await worker.stop()
            await task

    async def send_process(
        self, n: int, concurrency: int, go: Callable[[], Awaitable[None]], meter: Meter
    ) -> None:
        async with self.pool(concurrency + 4) as pool:
            registry = HandlerRegistry()

            @registry.handler(DOMAIN, "PlaceOrder")
            async def place_order(command: object, context: object) -> None:
                return None

            worker = Worker(
                pool, domain=DOMAIN, registry=registry, concurrency=concurrency, schema=SCHEMA
            )
            task = asyncio.create_task(worker.run())
            await worker.ready.wait()
            try:
                with meter.measure(n):
                    await go()
                    await wait_for_count(lambda: worker.stats["completed"], n)
            finally:
                await worker.stop()
                await task

    async def latency(self, samples: int, meter: Meter) -> list[float]:
        async with self.pool(8) as pool:
            bus = CommandBus(pool, schema=SCHEMA)
            registry = HandlerRegistry()
            stamps: list[float] = []
            arrived = asyncio.Event()

            @registry.handler(DOMAIN, "Ping")
            async def ping(command: object, context: object) -> None:
                stamps.append(time.perf_counter())
                arrived.set()

            worker = Worker(
                pool,
                domain=DOMAIN,
                registry=registry,
                concurrency=4,
                poll_interval=5.0,
                schema=SCHEMA,
            )
            task = asyncio.create_task(worker.run())
            await worker.ready.wait()
            try:
                return await idle_latency(
                    samples,
                    lambda: bus.send(DOMAIN, "Ping", uuid.uuid4(), DATA),
                    arrived,
                    stamps,
                    meter,
                )
            finally:
                await worker.stop()
                await task


if __name__ == "__main__":
    main("commandbus", Commandbus)
