"""What tracking a batch costs: completing N commands with and without a batch.

Both runs: N no-op commands already sent, one Worker at the given concurrency, time from
worker start to the last command COMPLETED (read from the database: the latest
``updated_at``, so how fast we notice does not count). The batch run also has an
``on_complete`` callback registered, so its watcher polls the derived counters all along,
as in real use. Runs alternate and repeat; the medians are compared.

Target (issue 5): the batch run is at most 20% slower (ratio batch/plain >= 0.83).
Also printed: how long ``get_batch`` takes on the finished batch, and how long after the
last completion ``on_complete`` ran.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BatchCommand,
    BatchInfo,
    Command,
    CommandBus,
    HandlerContext,
    HandlerRegistry,
    SendRequest,
    Worker,
)

sys.path.insert(0, str(Path(__file__).parent))

from _common import fresh_schema_pool, server_url

DOMAIN = "bench"


async def _noop(command: Command, ctx: HandlerContext) -> None:
    return None


async def _db_now(pool: AsyncConnectionPool) -> datetime:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT clock_timestamp()")).fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


async def _wait_queue_empty(pool: AsyncConnectionPool, schema: str) -> None:
    """Every command finished (a finished command's queue message is deleted)."""
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(schema, "queue"))
    while True:
        async with pool.connection() as conn:
            row = await (await conn.execute(query)).fetchone()
        if row is not None and not row[0]:
            return
        await asyncio.sleep(0.05)


async def _last_completion(pool: AsyncConnectionPool, schema: str) -> tuple[datetime, int]:
    query = sql.SQL("SELECT max(updated_at), count(*) FROM {} WHERE status = 'COMPLETED'").format(
        sql.Identifier(schema, "commands")
    )
    async with pool.connection() as conn:
        row = await (await conn.execute(query)).fetchone()
    assert row is not None
    return row[0], row[1]


async def run_once(url: str, n: int, concurrency: int, *, batch: bool) -> dict[str, float]:
    async with fresh_schema_pool(url, max_size=concurrency + 6) as (pool, schema):
        registry = HandlerRegistry()
        registry.register(DOMAIN, "Noop", _noop)
        fired = asyncio.Event()
        fired_at: list[float] = []

        async def on_complete(info: BatchInfo) -> None:
            fired_at.append(time.time())
            fired.set()

        async with CommandBus(pool, schema=schema) as bus:
            if batch:
                commands = [BatchCommand("Noop", uuid.uuid4(), {"i": i}) for i in range(n)]
                created = await bus.create_batch(
                    DOMAIN, commands, name="bench", on_complete=on_complete
                )
            else:
                for start in range(0, n, 1000):
                    await bus.send_batch(
                        [
                            SendRequest(DOMAIN, "Noop", uuid.uuid4(), {"i": i})
                            for i in range(start, min(n, start + 1000))
                        ]
                    )
            worker = Worker(
                pool, domain=DOMAIN, registry=registry, concurrency=concurrency, schema=schema
            )
            t0 = await _db_now(pool)
            task = asyncio.create_task(worker.run())
            await _wait_queue_empty(pool, schema)
            last, completed = await _last_completion(pool, schema)
            assert completed == n, f"{completed} of {n} completed"
            figures = {"rate": n / (last - t0).total_seconds()}
            if batch:
                await asyncio.wait_for(fired.wait(), 30)
                figures["callback_delay_ms"] = (fired_at[0] - last.timestamp()) * 1000
                t1 = time.perf_counter()
                info = await bus.get_batch(DOMAIN, created.batch_id)
                figures["get_batch_ms"] = (time.perf_counter() - t1) * 1000
                assert info is not None and info.completed == n
            await worker.stop()
            await task
        return figures


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain: list[float] = []
    batched: list[dict[str, float]] = []
    with server_url() as url:
        await run_once(url, 1000, args.concurrency, batch=False)  # warm-up
        for _ in range(args.rounds):
            plain.append((await run_once(url, args.n, args.concurrency, batch=False))["rate"])
            batched.append(await run_once(url, args.n, args.concurrency, batch=True))
    plain_rate = statistics.median(plain)
    batch_rate = statistics.median(b["rate"] for b in batched)
    ratio = batch_rate / plain_rate
    print(
        f"{args.n:,} no-op commands, one worker at concurrency {args.concurrency}, "
        f"median of {args.rounds} rounds"
    )
    print(
        f"{'without batch':<16}{plain_rate:>12,.0f} commands/s   runs: "
        + ", ".join(f"{r:,.0f}" for r in plain)
    )
    print(
        f"{'in one batch':<16}{batch_rate:>12,.0f} commands/s   runs: "
        + ", ".join(f"{b['rate']:,.0f}" for b in batched)
    )
    print(
        f"ratio batch/plain: {ratio:.3f} ({(1 / ratio - 1) * 100:+.1f}% time; "
        f"target: at most +20%) -> {'OK' if ratio >= 1 / 1.2 else 'TOO SLOW'}"
    )
    print(
        "get_batch on the finished batch: "
        f"{statistics.median(b['get_batch_ms'] for b in batched):.1f} ms; "
        "on_complete ran "
        f"{statistics.median(b['callback_delay_ms'] for b in batched):.0f} ms after the last "
        "completion (watcher polls every 0.5 s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
