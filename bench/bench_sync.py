"""Cost of the blocking facade: SyncCommandBus.send next to await CommandBus.send.

    python bench/bench_sync.py [--sends N] [--rounds N] [--threads N]

Uses ``DATABASE_URL`` when set, otherwise a throwaway PostgreSQL with durable settings.
Prints, from one run on one database:

* the bare cost of one thread crossing: ``SyncRuntime.run`` of a no-op coroutine, next to
  ``BlockingPortal.call`` and ``asyncio.run_coroutine_threadsafe`` on the same loop;
* single-threaded ``SyncCommandBus.send`` / ``await CommandBus.send`` (target <= 1.25);
* N threads sharing one runtime / the async bus at concurrency N (target >= 90%).

Both comparisons run twice: durable commits (what users get), then with the sessions'
``synchronous_commit=off`` (same server), where a send costs no disk flush wait and the
fixed cost of the thread crossing weighs most: the worst case for the ratio.

Async and sync rounds alternate and the median ratio is reported, so drift of the
machine during the run affects both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, migrate
from commandbus.testing import postgres_server
from commandbus_sync import SyncCommandBus, SyncRuntime

DATA = {"amount": 100, "currency": "EUR", "note": "benchmark"}


async def noop() -> None:
    return None


def per_call_us(n: int, call: Callable[[], object], repeats: int = 5) -> float:
    """Best of ``repeats`` timings of ``n`` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def crossing_costs(rt: SyncRuntime, n: int) -> dict[str, float]:
    """One no-op coroutine across the thread boundary, three ways, on the runtime's loop."""
    portal, loop = rt._portal, rt._loop
    return {
        "SyncRuntime.run (used)": per_call_us(n, lambda: rt.run(noop)),
        "asyncio.run_coroutine_threadsafe": per_call_us(
            n, lambda: asyncio.run_coroutine_threadsafe(noop(), loop).result()
        ),
        "anyio BlockingPortal.call": per_call_us(n, lambda: portal.call(noop)),
    }


async def async_sends(bus: CommandBus, n: int, concurrency: int) -> float:
    """Seconds for ``n`` sends by ``concurrency`` tasks."""

    async def sender(count: int) -> None:
        for _ in range(count):
            await bus.send("bench", "Pay", uuid.uuid4(), DATA)

    start = time.perf_counter()
    await asyncio.gather(*(sender(n // concurrency) for _ in range(concurrency)))
    return time.perf_counter() - start


def sync_sends(bus: SyncCommandBus, n: int, threads: int) -> float:
    """Seconds for ``n`` sends by ``threads`` threads sharing one runtime."""
    go = threading.Barrier(threads + 1)

    def sender(count: int) -> None:
        go.wait()
        for _ in range(count):
            bus.send("bench", "Pay", uuid.uuid4(), DATA)

    workers = [threading.Thread(target=sender, args=(n // threads,)) for _ in range(threads)]
    for w in workers:
        w.start()
    go.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return time.perf_counter() - start


class AsyncSide:
    """The async bus on a loop of its own in this (main) thread, like an async app."""

    def __init__(self, url: str, schema: str, size: int, options: dict[str, str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = AsyncConnectionPool(
            url, min_size=size, max_size=size, kwargs=options, open=False
        )
        self.loop.run_until_complete(self.pool.open(wait=True))
        self.bus = CommandBus(self.pool, schema=schema)

    def seconds(self, n: int, concurrency: int) -> float:
        return self.loop.run_until_complete(async_sends(self.bus, n, concurrency))

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.close())
        self.loop.close()


class CpuClock:
    """Process CPU seconds (all threads of this process: the client side only)."""

    def __init__(self) -> None:
        self.spent = {"async": 0.0, "sync": 0.0}

    def timed(self, side: str, run: Callable[[], float]) -> Callable[[], float]:
        def wrapper() -> float:
            start = time.process_time()
            try:
                return run()
            finally:
                self.spent[side] += time.process_time() - start

        return wrapper


def compare(
    label: str, rounds: int, async_s: Callable[[], float], sync_s: Callable[[], float]
) -> tuple[float, float, float]:
    """Alternate rounds; return median async s, median sync s, median ratio sync/async."""
    async_s()
    sync_s()  # warm up: connections, prepared statements
    pairs = [(async_s(), sync_s()) for _ in range(rounds)]
    a = statistics.median(p[0] for p in pairs)
    s = statistics.median(p[1] for p in pairs)
    ratio = statistics.median(p[1] / p[0] for p in pairs)
    print(f"  {label}: rounds sync/async = " + ", ".join(f"{p[1] / p[0]:.3f}" for p in pairs))
    return a, s, ratio


def measure(rt: SyncRuntime, url: str, args: argparse.Namespace, options: dict[str, str]) -> None:
    n, threads = args.sends, args.threads
    schema = f"bench_sync_{uuid.uuid4().hex[:8]}"
    one_pool = rt.open_pool(url, min_size=1, max_size=1, kwargs=options)
    many_pool = rt.open_pool(url, min_size=threads, max_size=threads, kwargs=options)
    rt.run(migrate, one_pool, schema=schema)
    sync_one = SyncCommandBus(pool=one_pool, runtime=rt, schema=schema)
    sync_many = SyncCommandBus(pool=many_pool, runtime=rt, schema=schema)
    async_one = AsyncSide(url, schema, 1, options)
    async_many = AsyncSide(url, schema, threads, options)
    cpu1, cpu8 = CpuClock(), CpuClock()
    sends = n * (args.rounds + 1)
    try:
        a1, s1, r1 = compare(
            "single-threaded",
            args.rounds,
            cpu1.timed("async", lambda: async_one.seconds(n, 1)),
            cpu1.timed("sync", lambda: sync_sends(sync_one, n, 1)),
        )
        a8, s8, r8 = compare(
            f"{threads} threads vs concurrency {threads}",
            args.rounds,
            cpu8.timed("async", lambda: async_many.seconds(n, threads)),
            cpu8.timed("sync", lambda: sync_sends(sync_many, n, threads)),
        )
    finally:
        async_one.close()
        async_many.close()
        rt.run(_drop_schema, one_pool, schema)
        rt.run(one_pool.close)
        rt.run(many_pool.close)
    print(f"  single-threaded send, {n:,} sends x {args.rounds} rounds (medians)")
    print(f"    await CommandBus.send      {a1 / n * 1e6:8.1f} us/send  {n / a1:8,.0f} sends/s")
    print(f"    SyncCommandBus.send        {s1 / n * 1e6:8.1f} us/send  {n / s1:8,.0f} sends/s")
    print(f"    ratio sync/async, paired   {r1:8.3f}   (target <= 1.25; median of round ratios)")
    print(f"    ratio of the medians       {s1 / a1:8.3f}")
    print(
        f"    client CPU per send        async {cpu1.spent['async'] / sends * 1e6:.0f} us,"
        f" sync {cpu1.spent['sync'] / sends * 1e6:.0f} us"
    )
    print(f"  {threads} threads sharing one runtime vs async bus at concurrency {threads}")
    print(f"    async throughput           {n / a8:8,.0f} sends/s")
    print(f"    sync throughput            {n / s8:8,.0f} sends/s")
    print(f"    sync/async, paired         {1 / r8:8.1%}   (target >= 90%; median of round ratios)")
    print(f"    ratio of the medians       {a8 / s8:8.1%}")
    print(
        f"    client CPU per send        async {cpu8.spent['async'] / sends * 1e6:.0f} us,"
        f" sync {cpu8.spent['sync'] / sends * 1e6:.0f} us"
        f"  (CPUs: {os.cpu_count()}, shared with the server)"
    )


def main(url: str, args: argparse.Namespace) -> None:
    with SyncRuntime() as rt:
        costs = crossing_costs(rt, 5_000)
        print("thread crossing of a no-op coroutine (best of 5 x 5,000)")
        for name, us in costs.items():
            print(f"  {name:<36} {us:8.1f} us")
        for title, options in (
            ("durable commits", {}),
            ("synchronous_commit=off (no flush wait)", {"options": "-c synchronous_commit=off"}),
        ):
            print(f"\n{title}")
            measure(rt, url, args, options)


async def _drop_schema(pool: AsyncConnectionPool, schema: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sends", type=int, default=2_000, help="sends per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per figure")
    parser.add_argument("--threads", type=int, default=8, help="threads / async concurrency")
    args = parser.parse_args()
    with postgres_server(fast=False) as server:
        main(server.url, args)


if __name__ == "__main__":
    cli()
