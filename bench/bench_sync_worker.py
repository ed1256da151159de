"""SyncWorker end-to-end throughput next to the async Worker's, measured in one run.

    python bench/bench_sync_worker.py [-n N] [--concurrency C] [--rounds R]

Each round sends N commands with ``send_batch``, starts the worker, and times until every
command is COMPLETED (the worker's own counter, polled from a thread on both sides).
Sides alternate round by round; the figure is the median of the
per-round ratios. Handlers are async no-ops (issue 6 target: SyncWorker >= 95% of Worker),
then plain ``def`` no-ops for information. Uses DATABASE_URL or a throwaway durable server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))

from _common import server_url
from commandbus import CommandBus, HandlerRegistry, SendRequest, Worker, migrate
from commandbus_sync import SyncRuntime, SyncWorker

DOMAIN = "bench"


def registry(plain: bool) -> HandlerRegistry:
    reg = HandlerRegistry()
    if plain:
        reg.register(DOMAIN, "Noop", lambda command, ctx: None)
    else:

        async def noop(command: Any, ctx: Any) -> None:
            return None

        reg.register(DOMAIN, "Noop", noop)
    return reg


def wait_all_completed(stats: dict[str, int], n: int) -> None:
    """Poll the worker's own counter from this thread: free for the database."""
    while stats["completed"] < n:
        time.sleep(0.005)


def fresh_schema(rt: SyncRuntime, pool: Any) -> str:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    rt.run(migrate, pool, schema=schema)
    return schema


def fill(rt: SyncRuntime, pool: Any, schema: str, n: int) -> None:
    bus = CommandBus(pool, schema=schema)
    for start in range(0, n, 1000):
        requests = [
            SendRequest(DOMAIN, "Noop", uuid.uuid4(), {"i": i})
            for i in range(start, min(n, start + 1000))
        ]
        rt.run(bus.send_batch, requests)


def drop(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def async_round(url: str, n: int, concurrency: int, plain: bool) -> float:
    """The async Worker on its own loop, in a thread (as an async app would run it)."""
    result: list[float] = []

    async def main() -> None:
        from psycopg_pool import AsyncConnectionPool

        async with AsyncConnectionPool(url, min_size=4, max_size=concurrency + 4) as pool:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            await migrate(pool, schema=schema)
            bus = CommandBus(pool, schema=schema)
            for start in range(0, n, 1000):
                await bus.send_batch(
                    [
                        SendRequest(DOMAIN, "Noop", uuid.uuid4(), {"i": i})
                        for i in range(start, min(n, start + 1000))
                    ]
                )
            worker = Worker(
                pool,
                domain=DOMAIN,
                registry=registry(plain),
                concurrency=concurrency,
                schema=schema,
            )
            t0 = time.perf_counter()
            task = asyncio.create_task(worker.run())
            await asyncio.to_thread(wait_all_completed, worker.stats, n)
            result.append(time.perf_counter() - t0)
            await worker.stop()
            await task
        drop(url, schema)

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    thread.join()
    return n / result[0]


def sync_round(url: str, n: int, concurrency: int, plain: bool) -> float:
    with SyncRuntime() as rt:
        pool = rt.open_pool(url, min_size=4, max_size=concurrency + 4)
        schema = fresh_schema(rt, pool)
        fill(rt, pool, schema, n)
        worker = SyncWorker(
            pool=pool,
            domain=DOMAIN,
            registry=registry(plain),
            runtime=rt,
            concurrency=concurrency,
            thread_pool_size=concurrency,
            schema=schema,
        )
        t0 = time.perf_counter()
        worker.run(block=False)
        wait_all_completed(worker.worker.stats, n)
        elapsed = time.perf_counter() - t0
        worker.stop()
    drop(url, schema)
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with server_url() as url:
        for plain in (False, True):
            kind = "plain def" if plain else "async"
            ratios, rates_a, rates_s = [], [], []
            for _ in range(args.rounds):
                a = async_round(url, args.n, args.concurrency, plain)
                s = sync_round(url, args.n, args.concurrency, plain)
                rates_a.append(a)
                rates_s.append(s)
                ratios.append(s / a)
            print(
                f"{kind:<9} handlers, concurrency {args.concurrency}, {args.n:,} commands: "
                f"Worker {statistics.median(rates_a):,.0f}/s, "
                f"SyncWorker {statistics.median(rates_s):,.0f}/s, "
                f"SyncWorker/Worker {statistics.median(ratios):.1%} "
                f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})"
                + ("   target >= 95%" if not plain else "")
            )


if __name__ == "__main__":
    main()
