"""commandbus next to PgQueuer, the peer the issues quote, measured in one run on one server.

    hatch run peers:bench [--jobs N] [--rounds N]

The issues quote PgQueuer 1.6 figures from another machine; absolute figures differ
between machines (and between runs of a shared host) by far more than the differences we
care about, so this script measures both libraries on the same server, interleaved, and
prints commandbus / PgQueuer for each shape of work:

* enqueue one at a time (commandbus ``send`` in a loop; PgQueuer ``enqueue`` of one job),
* enqueue in batches of 1,000 (``send_batch``; PgQueuer list ``enqueue``),
* process no-op jobs from a full queue, one worker process (commandbus ``Worker`` at
  concurrency 50 and 100; PgQueuer ``run`` in drain mode with batch size 10 and 50),
* latency from enqueue to handler start on an idle worker woken by LISTEN/NOTIFY.

PgQueuer writes one row per job; commandbus writes the command record, its queue message
and an audit event per command on send, and records every transition on processing. The
``peers`` hatch environment installs PgQueuer and asyncpg for this script only: neither
is a dependency of commandbus. Uses ``DATABASE_URL`` when set, else a throwaway server
with durable settings.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from pgqueuer import PgQueuer  # type: ignore[import-not-found]
from pgqueuer.db import AsyncpgDriver  # type: ignore[import-not-found]
from pgqueuer.queries import Queries  # type: ignore[import-not-found]
from pgqueuer.types import QueueExecutionMode  # type: ignore[import-not-found]
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).parent))

import bench_send
import bench_worker
from _common import fresh_schema_pool, server_url
from commandbus import CommandBus

BATCH = 1_000


class PgQueuerDatabase:
    """A fresh database with PgQueuer's schema installed; dropped on exit."""

    def __init__(self, url: str) -> None:
        self.admin_url = url
        self.name = f"peer_pgq_{uuid.uuid4().hex[:10]}"
        self.url = make_conninfo(url, dbname=self.name)

    async def __aenter__(self) -> PgQueuerDatabase:
        admin = await asyncpg.connect(_asyncpg_dsn(self.admin_url))
        try:
            await admin.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(_asyncpg_dsn(self.url))
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()
        return self

    async def __aexit__(self, *exc: object) -> None:
        admin = await asyncpg.connect(_asyncpg_dsn(self.admin_url))
        try:
            await admin.execute(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(_asyncpg_dsn(self.url))

    async def enqueue_one(self, n: int) -> float:
        conn = await self.connect()
        try:
            queries = Queries(AsyncpgDriver(conn))
            start = time.perf_counter()
            for _ in range(n):
                await queries.enqueue("noop", b"{}", 0)
            return n / (time.perf_counter() - start)
        finally:
            await conn.close()

    async def enqueue_batches(self, batches: int) -> float:
        conn = await self.connect()
        try:
            queries = Queries(AsyncpgDriver(conn))
            start = time.perf_counter()
            for _ in range(batches):
                await queries.enqueue(["noop"] * BATCH, [b"{}"] * BATCH, [0] * BATCH)
            return batches * BATCH / (time.perf_counter() - start)
        finally:
            await conn.close()

    async def process(self, jobs: int, batch_size: int) -> float:
        conn = await self.connect()
        try:
            await conn.execute("DELETE FROM pgqueuer")
            queries = Queries(AsyncpgDriver(conn))
            for start in range(0, jobs, BATCH):
                size = min(BATCH, jobs - start)
                await queries.enqueue(["noop"] * size, [b"{}"] * size, [0] * size)
            worker_conn = await self.connect()
            try:
                pgq = PgQueuer(AsyncpgDriver(worker_conn))

                @pgq.entrypoint("noop")
                async def noop(job: object) -> None:
                    return None

                start_time = time.perf_counter()
                await pgq.qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
                elapsed = time.perf_counter() - start_time
            finally:
                await worker_conn.close()
            left = await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE status = 'queued'")
            if left:
                raise RuntimeError(f"PgQueuer drain left {left} jobs queued")
            return jobs / elapsed
        finally:
            await conn.close()

    async def latency(self, samples: int) -> tuple[float, float]:
        """Enqueue-to-handler p50 and p99 (ms) on an idle worker, as bench_worker measures."""
        conn = await self.connect()
        worker_conn = await self.connect()
        pgq = PgQueuer(AsyncpgDriver(worker_conn))
        started: list[float] = []
        arrived = asyncio.Event()

        @pgq.entrypoint("ping")
        async def ping(job: object) -> None:
            started.append(time.perf_counter())
            arrived.set()

        task = asyncio.create_task(pgq.qm.run(batch_size=10))
        try:
            queries = Queries(AsyncpgDriver(conn))
            await asyncio.sleep(0.5)  # let it start listening: run() offers no ready event
            latencies = []
            for _ in range(samples):
                arrived.clear()
                sent = time.perf_counter()
                await queries.enqueue("ping", b"{}", 0)
                await asyncio.wait_for(arrived.wait(), 5)
                latencies.append((started[-1] - sent) * 1000)
                await asyncio.sleep(0.01)  # idle again, as bench_worker does
        finally:
            pgq.shutdown.set()
            await asyncio.wait_for(task, 10)
            await worker_conn.close()
            await conn.close()
        quantiles = statistics.quantiles(latencies, n=100)
        return quantiles[49], quantiles[98]


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


async def commandbus_send_loop(url: str, n: int) -> float:
    async with fresh_schema_pool(url, max_size=2) as (pool, schema):
        return await bench_send.send_loop(CommandBus(pool, schema=schema), n)


async def commandbus_send_batches(url: str, batches: int) -> float:
    async with fresh_schema_pool(url, max_size=2) as (pool, schema):
        return await bench_send.send_batches(CommandBus(pool, schema=schema), batches)


async def main(url: str, args: argparse.Namespace) -> None:
    pairs = [
        ("enqueue one at a time", "send loop", "enqueue(one)"),
        (f"enqueue in batches of {BATCH:,}", "send_batch", f"enqueue(list of {BATCH:,})"),
        ("process no-op jobs, moderate", "Worker c=50", "run batch_size=10"),
        ("process no-op jobs, best settings", "Worker c=100", "run batch_size=50"),
    ]
    ours: dict[str, list[float]] = {p[0]: [] for p in pairs}
    peer: dict[str, list[float]] = {p[0]: [] for p in pairs}
    ours_latency: list[tuple[float, float]] = []
    peer_latency: list[tuple[float, float]] = []
    async with PgQueuerDatabase(url) as pgq:
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr)
            ours[pairs[0][0]].append(await commandbus_send_loop(url, args.sends))
            peer[pairs[0][0]].append(await pgq.enqueue_one(args.sends))
            ours[pairs[1][0]].append(await commandbus_send_batches(url, args.batches))
            peer[pairs[1][0]].append(await pgq.enqueue_batches(args.batches))
            for (label, _, _), concurrency, batch_size in zip(
                pairs[2:], (50, 100), (10, 50), strict=True
            ):
                ours[label].append(
                    await bench_worker.throughput(url, args.jobs, concurrency, plain=False)
                )
                peer[label].append(await pgq.process(args.jobs, batch_size))
            ours_latency.append(await bench_worker.latency(url, args.samples))
            peer_latency.append(await pgq.latency(args.samples))
    print(f"\nmedian of {args.rounds} interleaved rounds, per second\n")
    print(f"| {'work':34} | {'commandbus':>22} | {'PgQueuer 1.6':>28} | ratio |")
    print(f"| {'-' * 34} | {'-' * 22}:| {'-' * 28}:| -----:|")
    for label, our_shape, peer_shape in pairs:
        a, b = statistics.median(ours[label]), statistics.median(peer[label])
        print(
            f"| {label:34} | {our_shape:>12} {a:>9,.0f} | {peer_shape:>18} {b:>9,.0f} "
            f"| {a / b:5.2f} |"
        )
    for index, name in ((0, "p50"), (1, "p99")):
        a = statistics.median(x[index] for x in ours_latency)
        b = statistics.median(x[index] for x in peer_latency)
        label = f"idle send-to-handler {name}, ms"
        print(f"| {label:34} | {'':>12} {a:>9.2f} | {'':>18} {b:>9.2f} | {a / b:5.2f} |")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=3_000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200, help="latency samples per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with server_url() as url:
        asyncio.run(main(url, args))


if __name__ == "__main__":
    cli()
