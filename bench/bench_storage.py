"""Bytes per command: tables and indexes of the schema after N commands were processed.

    python bench/bench_storage.py [-n 100000]

Sends N commands (batches of 1,000), processes them with a no-op async handler, then
prints the size of every table of the schema with its indexes and TOAST, per command,
as left by the run (dead row versions included) and after a plain VACUUM (space that
autovacuum makes reusable). Issue #12's target: at most 60 % of the version-3 shape's
~950 bytes per command. Only the public API is used, so the same script measures an older
checkout (PYTHONPATH=<old>/packages/commandbus-core/src python bench/bench_storage.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))

from _common import fresh_schema_pool, server_url
from commandbus import CommandBus, HandlerRegistry, SendRequest, Worker

DOMAIN = "bench"
SIZES = """
SELECT c.relname, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind = 'r'
ORDER BY 1
"""


def sizes(url: str, schema: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return dict(conn.execute(SIZES, [schema]).fetchall())  # type: ignore[arg-type]


def vacuum(url: str, schema: str, tables: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(schema, table)))


async def run(url: str, n: int) -> None:
    async with fresh_schema_pool(url, max_size=60) as (pool, schema):
        bus = CommandBus(pool, schema=schema)
        registry = HandlerRegistry()

        async def noop(command, ctx):  # type: ignore[no-untyped-def]
            return None

        registry.register(DOMAIN, "Noop", noop)
        for start in range(0, n, 1000):
            await bus.send_batch(
                [
                    SendRequest(DOMAIN, "Noop", uuid.uuid4(), {"i": i})
                    for i in range(start, min(n, start + 1000))
                ]
            )
        worker = Worker(pool, domain=DOMAIN, registry=registry, concurrency=50, schema=schema)
        task = asyncio.create_task(worker.run())
        while worker.stats["completed"] < n:  # noqa: ASYNC110 - a counter, not an event
            await asyncio.sleep(0.05)
        await worker.stop()
        await task
        after_run = sizes(url, schema)
        vacuum(url, schema, list(after_run))
        after_vacuum = sizes(url, schema)
        print(f"{n:,} commands processed (no-op handler), bytes per command:")
        print(f"{'table':<20}{'after the run':>16}{'after VACUUM':>16}")
        for table in sorted(after_run):
            if after_run[table] > 16_384:
                print(f"{table:<20}{after_run[table] / n:>16,.0f}{after_vacuum[table] / n:>16,.0f}")
        print(
            f"{'total':<20}{sum(after_run.values()) / n:>16,.0f}"
            f"{sum(after_vacuum.values()) / n:>16,.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100_000)
    args = parser.parse_args()
    with server_url() as url:
        asyncio.run(run(url, args.n))


if __name__ == "__main__":
    main()
