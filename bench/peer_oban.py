"""oban-py for bench/peers.py: one measurement in a fresh database, printed as JSON.

    python bench/peer_oban.py {send,batch,process,process_plain,latency,send_process} --url URL

Needs Python >= 3.12: the ``peers-oban`` hatch environment, which installs oban for the
benches only (it is not a dependency of commandbus). Jobs are kept when done (oban's
pruner deletes completed jobs after a day), as commandbus keeps its command records.
Open-source oban inserts ``enqueue_many`` one INSERT at a time in one transaction and
acknowledges completed jobs with one UPDATE each, batched per producer loop (bulk
inserts and acks are Oban Pro features).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from oban import Oban, job, worker  # type: ignore[import-not-found]
from oban.schema import install  # type: ignore[import-not-found]
from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).parent))

from _peer_harness import (
    BATCH,
    DATA,
    Meter,
    enqueue_setup,
    idle_latency,
    main,
    wait_for_count,
    wait_for_rows,
)

QUEUE = "bench"
handled = 0
stamps: list[float] = []
arrived = asyncio.Event()


@worker(queue=QUEUE)
class Noop:
    async def process(self, job: Any) -> None:
        global handled
        handled += 1


@job(queue=QUEUE)
def plain_noop(**kwargs: Any) -> None:
    global handled
    handled += 1


@worker(queue=QUEUE)
class Ping:
    async def process(self, job: Any) -> None:
        stamps.append(time.perf_counter())
        arrived.set()


async def _insert(pool: AsyncConnectionPool, jobs: list[Any]) -> None:
    """Unmeasured set-up of a full queue: oban's own INSERT and parameters, pipelined.

    ``enqueue_many`` awaits each row in turn (7 s per 20,000 here, most of a run). This
    uses private oban names (``Query``, ``INSERTABLE_FIELDS``), for the set-up only.
    """
    from oban._query import INSERTABLE_FIELDS, Query  # type: ignore[import-not-found]

    statement = Query._load_file("insert_job.sql", "public")
    params = [{k: Query._cast_type(k, getattr(job, k)) for k in INSERTABLE_FIELDS} for job in jobs]
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.executemany(statement, params)


class ObanPeer:
    schema = "public"
    package = "oban"

    def __init__(self, url: str) -> None:
        self.url = url

    def pool(self, size: int) -> AsyncConnectionPool:
        return AsyncConnectionPool(self.url, min_size=size, max_size=size, open=False)

    async def install(self) -> None:
        async with self.pool(1) as pool:
            await install(pool)

    def settings(self, shape: str, concurrency: int) -> str:
        if shape == "send":
            return "oban.enqueue() in a loop (client mode, not started), pool of 1"
        if shape == "batch":
            return f"oban.enqueue_many() of {BATCH:,} (one INSERT per job, one tx), pool of 1"
        if shape == "process":
            return (
                f'Oban(queues={{"{QUEUE}": {concurrency}}}), async process(), '
                f"pool of {concurrency + 4}, done = all rows 'completed'"
            )
        if shape == "process_plain":
            return (
                f'@job def (runs on the event loop, not a thread), queues={{"{QUEUE}": '
                f"{concurrency}}}, pool of {concurrency + 4}"
            )
        if shape == "send_process":
            return (
                "oban.enqueue() in a loop (client mode, not started), pool of 1, in one "
                f'process; Oban(queues={{"{QUEUE}": {concurrency}}}), LISTEN/NOTIFY, async '
                f"process(), pool of {concurrency + 4}, in another; done = all rows 'completed'"
            )
        return f'Oban(queues={{"{QUEUE}": 4}}), LISTEN/NOTIFY, pool of 8'

    async def send(self, n: int, meter: Meter) -> None:
        async with self.pool(1) as pool:
            oban = Oban(pool=pool)
            await meter.wait_for_go()
            with meter.measure(n):
                for _ in range(n):
                    await oban.enqueue(Noop.new(DATA))

    async def batch(self, n: int, meter: Meter) -> None:
        async with self.pool(1) as pool:
            oban = Oban(pool=pool)
            sizes = [min(BATCH, n - start) for start in range(0, n, BATCH)]
            with meter.measure(n):
                for size in sizes:
                    await oban.enqueue_many([Noop.new(DATA) for _ in range(size)])

    async def process(self, n: int, concurrency: int, plain: bool, meter: Meter) -> None:
        def new() -> Any:
            return plain_noop.new(**DATA) if plain else Noop.new(DATA)

        async with self.pool(concurrency + 4) as pool:
            await enqueue_setup(
                self.url, n, lambda size: _insert(pool, [new() for _ in range(size)])
            )
            oban = Oban(pool=pool, queues={QUEUE: concurrency})
            with meter.measure(n):
                await oban.start()
                await wait_for_count(lambda: handled, n)
                await wait_for_rows(
                    self.url, "SELECT count(*) FROM oban_jobs WHERE state = 'completed'", n
                )
            await oban.stop()

    async def send_process(
        self, n: int, concurrency: int, go: Callable[[], Awaitable[None]], meter: Meter
    ) -> None:
        async with self.pool(concurrency + 4) as pool:
            oban = Oban(pool=pool, queues={QUEUE: concurrency})
            await oban.start()
            try:
                await asyncio.sleep(0.5)  # let it start listening: no ready event
                with meter.measure(n):
                    await go()
                    await wait_for_count(lambda: handled, n)
                    await wait_for_rows(
                        self.url, "SELECT count(*) FROM oban_jobs WHERE state = 'completed'", n
                    )
            finally:
                await oban.stop()

    async def latency(self, samples: int, meter: Meter) -> list[float]:
        async with self.pool(8) as pool:
            oban = Oban(pool=pool, queues={QUEUE: 4})
            await oban.start()
            try:
                await asyncio.sleep(0.5)  # let it start listening: no ready event
                return await idle_latency(
                    samples, lambda: oban.enqueue(Ping.new(DATA)), arrived, stamps, meter
                )
            finally:
                await oban.stop()


if __name__ == "__main__":
    main("oban", ObanPeer)
