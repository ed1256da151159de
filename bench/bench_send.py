"""Sending throughput of commandbus next to raw INSERT yardsticks measured in the same run.

    python bench/bench_send.py [--sends N] [--batches N] [--tasks N] [--rounds N]

Uses ``DATABASE_URL`` when set, otherwise starts a throwaway PostgreSQL with durable
settings (fsync and synchronous_commit on). Figures are commands (or rows) per second of
wall time, the median of ``--rounds`` interleaved rounds. Absolute figures drift between
machines and runs: compare each figure with its yardstick from the same run.

Yardsticks, on a plain table through the same driver (psycopg, async, binary parameters):
a one-row INSERT transaction in a loop on one connection (the shape of ``send``), the same
from concurrent tasks, and a 1,000-row INSERT transaction (the shape of ``send_batch``).
When ``pgbench`` is found next to the server binaries, its figures for the same two
transactions are printed too, to compare with figures quoted from other machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, SendRequest, migrate
from commandbus.testing import find_server_binaries, postgres_server

BATCH = 1_000
DATA = {"order_id": 1234, "amount": "99.90", "currency": "EUR", "note": "benchmark"}


@dataclass
class Row:
    label: str
    unit: str
    yardstick: str | None = None
    figures: list[float] = field(default_factory=list)

    @property
    def value(self) -> float:
        return statistics.median(self.figures)


async def per_second(count: int, run: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await run()
    return count / (time.perf_counter() - start)


def requests(n: int) -> list[SendRequest]:
    return [SendRequest("bench", "PlaceOrder", uuid.uuid4(), DATA) for _ in range(n)]


async def send_loop(bus: CommandBus, n: int) -> float:
    ids = [uuid.uuid4() for _ in range(n)]

    async def run() -> None:
        for command_id in ids:
            await bus.send("bench", "PlaceOrder", command_id, DATA)

    return await per_second(n, run)


async def send_batches(bus: CommandBus, batches: int) -> float:
    work = [requests(BATCH) for _ in range(batches)]

    async def run() -> None:
        for batch in work:
            await bus.send_batch(batch)

    return await per_second(batches * BATCH, run)


async def concurrent_sends(bus: CommandBus, n: int, tasks: int, *, notify: bool) -> float:
    """``tasks`` senders on one pool. Without NOTIFY: the same statement, channel list empty."""
    per_task = n // tasks

    async def send(request: SendRequest) -> None:
        prepared = bus.sender.prepare([request])
        prepared.params["channels"] = ""
        await bus.sender.write(prepared, None)

    async def sender() -> None:
        for request in requests(per_task):
            if notify:
                await bus.send(request.domain, request.command_type, request.command_id, DATA)
            else:
                await send(request)

    async def run() -> None:
        await asyncio.gather(*(sender() for _ in range(tasks)))

    return await per_second(per_task * tasks, run)


class RawInserts:
    """pgbench-style INSERT transactions on a plain table, through psycopg."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.table = sql.Identifier(schema, "raw_insert")
        self.one = sql.SQL("INSERT INTO {} (id, payload) VALUES (%b, %b)").format(self.table)
        self.many = sql.SQL(
            "INSERT INTO {} (id, payload) SELECT * FROM unnest(%b::bigint[], %b::text[])"
        ).format(self.table)
        self.payload = '{"order_id":1234,"amount":"99.90","currency":"EUR","note":"benchmark"}'

    async def create(self) -> None:
        async with await AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigint, payload text, at timestamptz DEFAULT now())"
                ).format(self.table)
            )

    async def one_row_loop(self, n: int, tasks: int = 1) -> float:
        conns = [await AsyncConnection.connect(self.url, autocommit=True) for _ in range(tasks)]

        async def worker(conn: AsyncConnection) -> None:
            for i in range(n // tasks):
                await conn.execute(self.one, (i, self.payload))

        async def run() -> None:
            await asyncio.gather(*(worker(c) for c in conns))

        try:
            return await per_second(n // tasks * tasks, run)
        finally:
            for conn in conns:
                await conn.close()

    async def batch_loop(self, batches: int) -> float:
        ids, payloads = list(range(BATCH)), [self.payload] * BATCH
        async with await AsyncConnection.connect(self.url, autocommit=True) as conn:

            async def run() -> None:
                for _ in range(batches):
                    await conn.execute(self.many, (ids, payloads))

            return await per_second(batches * BATCH, run)


def pgbench(url: str, schema: str, seconds: int) -> list[tuple[str, float]]:
    """tps of pgbench itself for the two yardstick transactions, if pgbench is installed."""
    bindir = find_server_binaries()
    binary = os.path.join(bindir, "pgbench") if bindir else None
    if binary is None or not os.access(binary, os.X_OK):
        return []
    table = f'"{schema}".raw_insert'
    payload = "'" + "x" * 70 + "'"
    scripts = [
        ("pgbench one-row INSERT, 1 client", f"INSERT INTO {table} VALUES (1, {payload});", 1),
        ("pgbench one-row INSERT, 4 clients", f"INSERT INTO {table} VALUES (1, {payload});", 4),
        (
            f"pgbench {BATCH:,}-row INSERT, 1 client, rows",
            f"INSERT INTO {table} SELECT g, {payload} FROM generate_series(1, {BATCH}) g;",
            1,
        ),
    ]
    results = []
    for label, script, clients in scripts:
        with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
            f.write(script + "\n")
            f.flush()
            n = str(clients)
            command = [binary, "-n", "-f", f.name, "-c", n, "-j", n, "-T", str(seconds), url]
            out = subprocess.run(command, capture_output=True, text=True, check=False)
        match = re.search(r"tps = ([\d.]+)", out.stdout)
        if match:
            tps = float(match.group(1))
            results.append((label, tps * (BATCH if "rows" in label else 1)))
    return results


async def main(url: str, args: argparse.Namespace) -> None:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    raw = RawInserts(url, schema)
    rows = {
        "raw_one": Row("raw one-row INSERT tx, one connection", "rows/s"),
        "send": Row("send, loop on one connection", "commands/s", "raw_one"),
        "raw_many": Row(f"raw {BATCH:,}-row INSERT tx, one connection", "rows/s"),
        "batch": Row(f"send_batch of {BATCH:,}, one connection", "commands/s", "raw_many"),
        "raw_tasks": Row(f"raw one-row INSERT tx, {args.tasks} connections", "rows/s"),
        "notify": Row(f"send, {args.tasks} tasks, with NOTIFY", "commands/s", "raw_tasks"),
        "silent": Row(f"send, {args.tasks} tasks, without NOTIFY", "commands/s", "raw_tasks"),
    }
    async with (
        AsyncConnectionPool(url, min_size=1, max_size=1, open=False) as one,
        AsyncConnectionPool(url, min_size=args.tasks, max_size=args.tasks, open=False) as many,
    ):
        await migrate(one, schema=schema)
        await raw.create()
        single, shared = CommandBus(one, schema=schema), CommandBus(many, schema=schema)
        # Warm up: connections, prepared statements, table and index pages.
        await send_loop(single, 200)
        await send_batches(single, 2)
        await concurrent_sends(shared, 400, args.tasks, notify=True)
        await concurrent_sends(shared, 400, args.tasks, notify=False)
        await raw.one_row_loop(200)
        for _ in range(args.rounds):
            rows["raw_one"].figures.append(await raw.one_row_loop(args.sends))
            rows["send"].figures.append(await send_loop(single, args.sends))
            rows["raw_many"].figures.append(await raw.batch_loop(args.batches))
            rows["batch"].figures.append(await send_batches(single, args.batches))
            rows["raw_tasks"].figures.append(await raw.one_row_loop(args.sends, args.tasks))
            for key, notify in (("notify", True), ("silent", False)):
                figure = await concurrent_sends(shared, args.sends, args.tasks, notify=notify)
                rows[key].figures.append(figure)
        bench_rows = pgbench(url, schema, args.pgbench_seconds) if args.pgbench_seconds else []
        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    print(f"\nmedian of {args.rounds} rounds; ratio = figure / its yardstick in this run\n")
    print(f"| {'what':<42} | {'per second':>11} | {'unit':<10} | {'ratio':>5} |")
    print(f"| {'-' * 42} | {'-' * 11}:| {'-' * 10} | {'-' * 5}:|")
    for row in rows.values():
        ratio = f"{row.value / rows[row.yardstick].value:.2f}" if row.yardstick else ""
        print(f"| {row.label:<42} | {row.value:>11,.0f} | {row.unit:<10} | {ratio:>5} |")
    for label, figure in bench_rows:
        print(f"| {label:<42} | {figure:>11,.0f} | {'rows/s':<10} | {'':>5} |")


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sends", type=int, default=2_000, help="sends per loop figure")
    parser.add_argument("--batches", type=int, default=10, help=f"batches of {BATCH:,}")
    parser.add_argument("--tasks", type=int, default=8, help="concurrent senders")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is shown")
    parser.add_argument(
        "--pgbench-seconds", type=int, default=3, help="0 skips the pgbench figures"
    )
    args = parser.parse_args()
    with postgres_server(fast=False) as server:
        asyncio.run(main(server.url, args))


if __name__ == "__main__":
    cli()
