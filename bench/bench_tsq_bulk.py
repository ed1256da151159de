"""What fixing failures in bulk costs: retry_many and cancel_many over N parked commands.

N commands (default 10,000, with a reply_to queue so that cancel writes replies too) are
sent with send_batch and parked with one UPDATE, as a permanently failing handler leaves
them. Then, each timed on its own: a dry run, ``retry_many`` of all of them (the same
filter an operator would type: one domain and error code), parking them again, and
``cancel_many`` of all. Repeated ``--rounds`` times on a fresh schema; medians printed.

Target (issue 14): 10,000 commands in one call in seconds, not minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, SendRequest, TroubleshootingFilter, TroubleshootingQueue

sys.path.insert(0, str(Path(__file__).parent))

from _common import fresh_schema_pool, server_url

DOMAIN = "bench"
WHERE = TroubleshootingFilter(domain=DOMAIN, error_code="UPSTREAM_DOWN")


async def _park(pool: AsyncConnectionPool, schema: str, ids: list[uuid.UUID]) -> None:
    statement = sql.SQL(
        "UPDATE {} SET status = 'IN_TROUBLESHOOTING_QUEUE', vt = NULL, attempts = 3,"
        " last_error_type = 'PermanentCommandError', last_error_code = 'UPSTREAM_DOWN',"
        " last_error_message = 'provider unreachable', updated_at = now()"
        " WHERE command_id = ANY (%s)"
    ).format(sql.Identifier(schema, "commands"))
    async with pool.connection() as conn:
        await conn.execute(statement, [ids])
        await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, "commands")))


async def _round(url: str, n: int) -> dict[str, float]:
    async with fresh_schema_pool(url, max_size=4) as (pool, schema):
        bus = CommandBus(pool, schema=schema)
        tsq = TroubleshootingQueue(pool, schema=schema)
        ids = [uuid.uuid4() for _ in range(n)]
        for start in range(0, n, 5000):
            await bus.send_batch(
                [
                    SendRequest(DOMAIN, "Pay", command_id, {"order": i}, reply_to="replies")
                    for i, command_id in enumerate(ids[start : start + 5000], start)
                ]
            )
        await _park(pool, schema, ids)
        timings: dict[str, float] = {}

        started = time.perf_counter()
        dry = await tsq.retry_many(WHERE, operator="bench", dry_run=True)
        timings["dry run"] = time.perf_counter() - started

        started = time.perf_counter()
        retried = await tsq.retry_many(WHERE, operator="bench", reason="provider back")
        timings["retry_many"] = time.perf_counter() - started

        await _park(pool, schema, ids)
        started = time.perf_counter()
        canceled = await tsq.cancel_many(WHERE, operator="bench", reason="orders expired")
        timings["cancel_many"] = time.perf_counter() - started

        assert dry.count == retried.count == canceled.count == n, (dry, retried, canceled)
        return timings


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000, help="parked commands (default 10000)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with server_url() as url:
        rounds = [await _round(url, args.n) for _ in range(args.rounds)]
    print(f"{args.n} parked commands, median of {args.rounds} rounds (durable server settings)")
    for name in rounds[0]:
        seconds = statistics.median(r[name] for r in rounds)
        print(f"  {name:<12} {seconds:7.2f} s  {args.n / seconds:9.0f} commands/s")


if __name__ == "__main__":
    asyncio.run(main())
