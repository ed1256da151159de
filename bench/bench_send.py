"""Sending throughput of commandbus, next to raw INSERT yardsticks measured in the same run.

    python bench/bench_send.py [--loop N] [--batches N] [--concurrency N]

Uses ``DATABASE_URL`` when set, otherwise starts a throwaway PostgreSQL with durable
settings (fsync on). Every figure is commands (or rows) per second of wall time; compare
ratios within one run, not absolute numbers across machines.

The yardsticks are pgbench-style transactions driven through psycopg on the same cluster:
a one-row INSERT transaction in a loop on one connection (the shape of ``send`` in a loop)
and a 1,000-row INSERT transaction (the shape of ``send_batch``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, SendRequest, migrate
from commandbus._send import prepare_send
from commandbus.testing import postgres_server

BATCH_SIZE = 1_000
DATA = {"amount": 100, "currency": "EUR", "note": "benchmark"}


async def rate(count: int, run: Callable[[], Awaitable[None]]) -> float:
    """``count`` units done by ``run``, per second."""
    start = time.perf_counter()
    await run()
    return count / (time.perf_counter() - start)


async def bench_send_loop(bus: CommandBus, n: int) -> float:
    async def run() -> None:
        for _ in range(n):
            await bus.send("bench", "Pay", uuid.uuid4(), DATA)

    return await rate(n, run)


async def bench_send_batch(bus: CommandBus, batches: int) -> float:
    payloads = [
        [SendRequest("bench", "Pay", uuid.uuid4(), DATA) for _ in range(BATCH_SIZE)]
        for _ in range(batches)
    ]

    async def run() -> None:
        for requests in payloads:
            await bus.send_batch(requests)

    return await rate(batches * BATCH_SIZE, run)


async def bench_concurrent(bus: CommandBus, n: int, tasks: int, *, notify: bool) -> float:
    """``tasks`` senders sharing the pool; without NOTIFY the channel list is emptied."""
    per_task = n // tasks

    async def sender() -> None:
        for _ in range(per_task):
            if notify:
                await bus.send("bench", "Pay", uuid.uuid4(), DATA)
            else:
                prepared = prepare_send(
                    [SendRequest("bench", "Pay", uuid.uuid4(), DATA)],
                    schema=bus.schema,
                    default_max_attempts=bus.default_max_attempts,
                )
                prepared.params["channels"] = []
                await bus._execute_send(prepared, None)

    async def run() -> None:
        await asyncio.gather(*(sender() for _ in range(tasks)))

    return await rate(per_task * tasks, run)


async def bench_raw_insert(url: str, schema: str, n: int, batches: int) -> tuple[float, float]:
    """One-row INSERT transactions in a loop, then 1,000-row INSERT transactions."""
    table = sql.Identifier(schema, "raw_insert")
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint, payload text, at timestamptz DEFAULT now())"
            ).format(table)
        )
        one = sql.SQL("INSERT INTO {} (id, payload) VALUES (%s, %s)").format(table)
        many = sql.SQL(
            "INSERT INTO {} (id, payload) SELECT * FROM unnest(%s::bigint[], %s::text[])"
        ).format(table)
        ids = list(range(BATCH_SIZE))
        texts = ["x" * 60] * BATCH_SIZE

        async def one_row() -> None:
            for i in range(n):
                await conn.execute(one, (i, "x" * 60))

        async def thousand_rows() -> None:
            for _ in range(batches):
                await conn.execute(many, (ids, texts))

        return await rate(n, one_row), await rate(batches * BATCH_SIZE, thousand_rows)


async def main(url: str, args: argparse.Namespace) -> None:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    async with (
        AsyncConnectionPool(url, min_size=1, max_size=1, open=False) as one,
        AsyncConnectionPool(
            url, min_size=args.concurrency, max_size=args.concurrency, open=False
        ) as many,
    ):
        await migrate(one, schema=schema)
        single = CommandBus(one, schema=schema)
        shared = CommandBus(many, schema=schema)
        await bench_send_loop(single, 200)  # warm up: connections, prepared statements
        raw_one, raw_many = await bench_raw_insert(url, schema, args.loop, args.batches)
        rows = [
            ("send, loop on one connection", await bench_send_loop(single, args.loop), raw_one),
            (
                f"send_batch of {BATCH_SIZE:,}",
                await bench_send_batch(single, args.batches),
                raw_many,
            ),
        ]
        for notify in (True, False):
            label = (
                f"send, {args.concurrency} concurrent tasks, {'with' if notify else 'no'} NOTIFY"
            )
            figure = await bench_concurrent(shared, args.loop, args.concurrency, notify=notify)
            rows.append((label, figure, None))
        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    print(f"{'what':<48} {'commands/s':>12} {'raw INSERT/s':>13} {'ratio':>6}")
    print(f"{'one-row INSERT transaction, one connection':<48} {'':>12} {raw_one:>13,.0f}")
    print(f"{f'{BATCH_SIZE:,}-row INSERT transaction, rows':<48} {'':>12} {raw_many:>13,.0f}")
    for label, figure, yardstick in rows:
        ratio = f"{figure / yardstick:.2f}" if yardstick else ""
        raw = f"{yardstick:,.0f}" if yardstick else ""
        print(f"{label:<48} {figure:>12,.0f} {raw:>13} {ratio:>6}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", type=int, default=5_000, help="sends in the loop figures")
    parser.add_argument("--batches", type=int, default=20, help="batches of 1,000")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent senders")
    args = parser.parse_args()
    with postgres_server(fast=False) as server:
        asyncio.run(main(server.url, args))


if __name__ == "__main__":
    cli()
