"""procrastinate 3 for bench/peers.py: one measurement in a fresh database, printed as JSON.

    python bench/peer_procrastinate.py {send,batch,process,process_plain,latency,send_process}
        --url URL

``PsycopgConnector`` on a psycopg pool sized as commandbus's. Jobs are kept when done
(``delete_jobs="never"``, the default), as commandbus keeps its command records; the
worker drains the queue with ``wait=False``. The ``peers`` hatch environment installs
procrastinate for the benches only: it is not a dependency of commandbus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from procrastinate import App, PsycopgConnector  # type: ignore[import-not-found]
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
# Tasks are registered and run in this one process, so procrastinate's warning about an
# App made in __main__ (workers importing tasks from elsewhere) does not apply.
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)


class Procrastinate:
    schema = "public"
    package = "procrastinate"

    def __init__(self, url: str) -> None:
        self.url = url

    @contextlib.asynccontextmanager
    async def app(self, pool_size: int) -> AsyncIterator[App]:
        app = App(connector=PsycopgConnector())
        pool = AsyncConnectionPool(self.url, min_size=pool_size, max_size=pool_size, open=False)
        async with pool, app.open_async(pool):
            yield app

    async def install(self) -> None:
        async with self.app(1) as app:
            await app.schema_manager.apply_schema_async()

    def settings(self, shape: str, concurrency: int) -> str:
        if shape == "send":
            return "task.defer_async() in a loop, pool of 1"
        if shape == "batch":
            return f"task.batch_defer_async() of {BATCH:,}, pool of 1"
        if shape in ("process", "process_plain"):
            kind = "def (in a thread)" if shape == "process_plain" else "async def"
            return (
                f"run_worker_async(concurrency={concurrency}, wait=False, "
                f'listen_notify=False, delete_jobs="never"), {kind} task, '
                f"pool of {concurrency + 4}"
            )
        if shape == "send_process":
            return (
                "task.defer_async() in a loop, pool of 1, in one process; "
                f"run_worker_async(concurrency={concurrency}, listen_notify=True, "
                f'delete_jobs="never"), async def task, pool of {concurrency + 4}, in '
                "another; done = all handled and all rows 'succeeded'"
            )
        return (
            "run_worker_async(concurrency=4, listen_notify=True, "
            "fetch_job_polling_interval=5), pool of 8"
        )

    async def send(self, n: int, meter: Meter) -> None:
        async with self.app(1) as app:
            task = app.task(name="noop", queue=QUEUE)(_noop)
            await meter.wait_for_go()
            with meter.measure(n):
                for _ in range(n):
                    await task.defer_async(**DATA)

    async def batch(self, n: int, meter: Meter) -> None:
        async with self.app(1) as app:
            task = app.task(name="noop", queue=QUEUE)(_noop)
            sizes = [min(BATCH, n - start) for start in range(0, n, BATCH)]
            with meter.measure(n):
                for size in sizes:
                    await task.batch_defer_async(*([DATA] * size))

    async def process(self, n: int, concurrency: int, plain: bool, meter: Meter) -> None:
        async with self.app(concurrency + 4) as app:
            task = app.task(name="noop", queue=QUEUE)(_plain_noop if plain else _noop)
            await enqueue_setup(self.url, n, lambda size: task.batch_defer_async(*([DATA] * size)))
            with meter.measure(n):
                await app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=concurrency,
                    wait=False,
                    listen_notify=False,
                    delete_jobs="never",
                    install_signal_handlers=False,
                )
            async with app.connector.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
                )
                row = await cur.fetchone()
            if not row or row[0] != n:
                raise RuntimeError(f"procrastinate finished {row} of {n} jobs")

    async def send_process(
        self, n: int, concurrency: int, go: Callable[[], Awaitable[None]], meter: Meter
    ) -> None:
        handled = 0

        async def noop(**kwargs: Any) -> None:
            nonlocal handled
            handled += 1

        async with self.app(concurrency + 4) as app:
            app.task(name="noop", queue=QUEUE)(noop)
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=concurrency,
                    wait=True,
                    listen_notify=True,
                    delete_jobs="never",
                    install_signal_handlers=False,
                )
            )
            try:
                await asyncio.sleep(0.5)  # let it start listening: no ready event
                with meter.measure(n):
                    await go()
                    await wait_for_count(lambda: handled, n)
                    await wait_for_rows(
                        self.url,
                        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
                        n,
                    )
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    async def latency(self, samples: int, meter: Meter) -> list[float]:
        stamps: list[float] = []
        arrived = asyncio.Event()

        async def ping(**kwargs: Any) -> None:
            stamps.append(time.perf_counter())
            arrived.set()

        async with self.app(8) as app:
            task = app.task(name="ping", queue=QUEUE)(ping)
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=4,
                    wait=True,
                    listen_notify=True,
                    fetch_job_polling_interval=5.0,
                    install_signal_handlers=False,
                )
            )
            try:
                await asyncio.sleep(0.5)  # let it start listening: no ready event
                return await idle_latency(
                    samples, lambda: task.defer_async(**DATA), arrived, stamps, meter
                )
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker


async def _noop(**kwargs: Any) -> None:
    return None


def _plain_noop(**kwargs: Any) -> None:
    return None


if __name__ == "__main__":
    main("procrastinate", Procrastinate)
