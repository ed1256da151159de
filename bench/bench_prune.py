"""Retention under load: what the pruner costs a worker at full speed, and table sizes.

A producer keeps a backlog of 5,000 no-op commands in front of one async worker
(concurrency 100) until N commands are completed; once with ``retention=None`` (A) and
once with a pruner deleting what finished more than ``--older-than`` seconds ago every
second (B), alternating, in one run on one server. Prints completions/s of each run, the
cost of B against A (target: at most 10 %), how busy the pruner kept its connection, and,
in the last pair, the commands and audit row counts and the commands table's size on disk
(with its indexes) at every tenth of the run: with the pruner the rows stay flat and the
bytes level off once autovacuum reuses the space; without it both grow with N.

The throwaway server runs autovacuum every 5 s (``--naptime``): the default minute would
leave up to a minute of deleted rows waiting for vacuum at any time, which at this
bench's rate is most of a run.

    python bench/bench_prune.py                      # quick: 50,000 commands a run
    python bench/bench_prune.py --commands 500000 --rounds 1   # the reported figure
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from _common import fresh_schema_pool, server_url
from commandbus import CommandBus, HandlerRegistry, Retention, SendRequest, Worker

DOMAIN = "bench"
CONCURRENCY = 100
#: Commands sent but not completed the producer keeps in front of the worker.
BACKLOG = 5_000
SEND_CHUNK = 1_000


async def _sizes(pool: AsyncConnectionPool, schema: str) -> tuple[int, int, int]:
    """Rows of commands and audit, and the commands table's bytes (with its indexes)."""
    query = sql.SQL(
        "SELECT (SELECT count(*) FROM {c}), (SELECT count(*) FROM {a}), pg_total_relation_size(%s)"
    ).format(c=sql.Identifier(schema, "commands"), a=sql.Identifier(schema, "audit"))
    async with pool.connection() as conn:
        row = await (await conn.execute(query, [f'"{schema}".commands'])).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


async def one_run(
    url: str, n: int, retention: Retention | None, report: bool, label: str
) -> tuple[float, list[tuple[int, int, int, int]]]:
    """Completions/s of one worker over ``n`` commands; the size samples when ``report``."""
    async with fresh_schema_pool(url, max_size=CONCURRENCY + 6) as (pool, schema):
        bus = CommandBus(pool, schema=schema)
        registry = HandlerRegistry()

        async def noop(cmd, ctx):  # type: ignore[no-untyped-def]
            return None

        registry.register(DOMAIN, "Noop", noop)
        worker = Worker(
            pool,
            domain=DOMAIN,
            registry=registry,
            concurrency=CONCURRENCY,
            schema=schema,
            retention=retention,
        )
        samples: list[tuple[int, int, int, int]] = []
        sent = 0

        async def produce() -> None:
            nonlocal sent
            while sent < n:
                if sent - worker.stats["completed"] >= BACKLOG:
                    await asyncio.sleep(0.002)
                    continue
                size = min(SEND_CHUNK, n - sent)
                await bus.send_batch(
                    [SendRequest(DOMAIN, "Noop", uuid.uuid4(), {"i": i}) for i in range(size)]
                )
                sent += size

        # A head start, so the worker starts on a backlog as it will run on one.
        while sent < min(BACKLOG, n):
            size = min(SEND_CHUNK, n - sent)
            await bus.send_batch(
                [SendRequest(DOMAIN, "Noop", uuid.uuid4(), {"i": i}) for i in range(size)]
            )
            sent += size
        producer = asyncio.create_task(produce())
        t0 = time.perf_counter()
        task = asyncio.create_task(worker.run())
        next_sample = n // 10
        while worker.stats["completed"] < n:
            await asyncio.sleep(0.01)
            if report and worker.stats["completed"] >= next_sample:
                samples.append((worker.stats["completed"], *await _sizes(pool, schema)))
                next_sample += n // 10
        elapsed = time.perf_counter() - t0
        await producer
        await worker.stop()
        await task
        if report:
            samples.append((worker.stats["completed"], *await _sizes(pool, schema)))
        print(f"  {label}: {n / elapsed:,.0f} commands/s")
        if worker.pruner is not None:
            stats = worker.pruner.stats
            print(
                f"    pruner: {stats['commands']:,} commands deleted in {stats['rounds']} rounds, "
                f"busy {stats['busy_ms'] / 1000:.1f} s of the run's {elapsed:.1f} s "
                f"({stats['busy_ms'] / 1000 / elapsed:.0%} of one connection)"
            )
        return n / elapsed, samples


def _print_samples(title: str, samples: list[tuple[int, int, int, int]]) -> None:
    print(title)
    print(f"    {'completed':>10}{'commands rows':>15}{'audit rows':>12}{'commands MB':>13}")
    for done, rows, audit, size in samples:
        print(f"    {done:>10,}{rows:>15,}{audit:>12,}{size / 1e6:>13.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=50_000, help="per run (default 50000)")
    parser.add_argument("--rounds", type=int, default=3, help="A/B pairs (default 3)")
    parser.add_argument(
        "--older-than", type=float, default=2.0, help="pruner age in seconds (default 2)"
    )
    parser.add_argument(
        "--naptime",
        type=float,
        default=5.0,
        help="autovacuum_naptime in seconds for the throwaway server (default 5; the "
        "server's default, 60, leaves a minute of deleted rows unvacuumed at any time). "
        "Ignored with DATABASE_URL: a server of yours is never reconfigured",
    )
    args = parser.parse_args()
    retention = Retention(older_than=timedelta(seconds=args.older_than), interval=1.0)
    with server_url() as url:
        if not os.environ.get("DATABASE_URL"):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET autovacuum_naptime = {}").format(
                        sql.Literal(f"{args.naptime}s")
                    )
                )
                conn.execute("SELECT pg_reload_conf()")
        with psycopg.connect(url) as conn:
            row = conn.execute("SHOW autovacuum_naptime").fetchone()
        print(f"autovacuum_naptime = {row[0] if row else '?'}")
        off: list[float] = []
        on: list[float] = []
        for i in range(args.rounds):
            last = i == args.rounds - 1
            order = [(None, off), (retention, on)] if i % 2 == 0 else [(retention, on), (None, off)]
            for setting, rates in order:
                label = "with pruner" if setting else "no pruner"
                rate, samples = await one_run(
                    url, args.commands, setting, report=last, label=f"run {i + 1}, {label}"
                )
                rates.append(rate)
                if samples:
                    _print_samples(f"  table sizes, {label}:", samples)
        a, b = statistics.median(off), statistics.median(on)
        print(
            f"pruner A/B (c={CONCURRENCY}, {args.commands:,} commands a run, medians of "
            f"{args.rounds}): without {a:,.0f}/s, with {b:,.0f}/s, cost {1 - b / a:.1%}"
        )


if __name__ == "__main__":
    asyncio.run(main())
