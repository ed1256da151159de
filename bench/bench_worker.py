"""End-to-end worker throughput and send-to-handler latency.

Prints: commands/s from `send_batch` of N to all COMPLETED with a no-op async handler at
several concurrencies, the same with plain-def handlers, and idle-worker latency p50/p99.
Targets (issue 4): >= 8,000/s async at best settings, >= 2,000/s plain-def, p50 < 5 ms,
p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import fresh_schema_pool, server_url
from commandbus import CommandBus, HandlerRegistry, SendRequest, Worker

DOMAIN = "bench"


async def _wait_all_done(worker: Worker, n: int) -> None:
    """Poll the worker's own counter (recorded after each outcome commits): observing
    must not cost the database anything, or it would slow what is measured."""
    while worker.stats["completed"] < n:  # noqa: ASYNC110 - a counter, not an event
        await asyncio.sleep(0.005)


async def throughput(
    url: str,
    n: int,
    concurrency: int,
    plain: bool,
    hooks: list[Any] | None = None,
    other_type_limit: int | None = None,
) -> float:
    async with fresh_schema_pool(url, max_size=concurrency + 4) as (pool, schema):
        bus = CommandBus(pool, schema=schema)
        registry = HandlerRegistry()
        if plain:
            registry.register(DOMAIN, "Noop", lambda cmd, ctx: None)
        else:

            async def noop(cmd, ctx):  # type: ignore[no-untyped-def]
                return None

            registry.register(DOMAIN, "Noop", noop)
        if other_type_limit is not None:  # the domain leases with its limits checked
            registry.register(DOMAIN, "Capped", noop, max_running=other_type_limit)
        for start in range(0, n, 1000):
            await bus.send_batch(
                [
                    SendRequest(DOMAIN, "Noop", uuid.uuid4(), {"i": i})
                    for i in range(start, min(n, start + 1000))
                ]
            )
        worker = Worker(
            pool,
            domain=DOMAIN,
            registry=registry,
            concurrency=concurrency,
            schema=schema,
            hooks=hooks,
        )
        t0 = time.perf_counter()
        task = asyncio.create_task(worker.run())
        await _wait_all_done(worker, n)
        elapsed = time.perf_counter() - t0
        await worker.stop()
        await task
        return n / elapsed


async def latency(url: str, samples: int) -> tuple[float, float]:
    async with fresh_schema_pool(url, max_size=8) as (pool, schema):
        bus = CommandBus(pool, schema=schema)
        registry = HandlerRegistry()
        started: dict[uuid.UUID, float] = {}
        arrived = asyncio.Event()

        async def mark(cmd, ctx):  # type: ignore[no-untyped-def]
            started[cmd.command_id] = time.perf_counter()
            arrived.set()

        registry.register(DOMAIN, "Ping", mark)
        worker = Worker(
            pool, domain=DOMAIN, registry=registry, concurrency=4, poll_interval=5.0, schema=schema
        )
        task = asyncio.create_task(worker.run())
        await worker.ready.wait()
        lat = []
        for _ in range(samples):
            arrived.clear()
            cid = uuid.uuid4()
            t0 = time.perf_counter()
            await bus.send(DOMAIN, "Ping", cid, {})
            await asyncio.wait_for(arrived.wait(), 5)
            lat.append((started[cid] - t0) * 1000)
            await asyncio.sleep(0.01)  # let the worker go idle again: we measure idle wake-up
        await worker.stop()
        await task
        qs = statistics.quantiles(lat, n=100)
        return qs[49], qs[98]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[10, 50, 100, 200])
    parser.add_argument("--hooks-only", action="store_true", help="only the hooks A/B")
    parser.add_argument("--limits-only", action="store_true", help="only the limits A/B")
    args = parser.parse_args()
    with server_url() as url:
        if args.hooks_only:
            await hooks_cost(url, args.n, rounds=5)
            return
        if args.limits_only:
            await limits_cost(url, args.n, rounds=5)
            return
        print(f"{'handler':<10}{'concurrency':>12}{'commands/s':>14}")
        for c in args.concurrency:
            rate = await throughput(url, args.n, c, plain=False)
            print(f"{'async':<10}{c:>12}{rate:>14,.0f}")
        for c in (10, 50):
            rate = await throughput(url, args.n // 2, c, plain=True)
            print(f"{'plain def':<10}{c:>12}{rate:>14,.0f}")
        p50, p99 = await latency(url, 300)
        print(f"idle send-to-handler latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        await hooks_cost(url, args.n)


def _observers() -> dict[str, list[Any]]:
    """The hook sets of the A/B, by name: Prometheus metrics, OpenTelemetry tracing with
    the SDK recording every span (a batch processor and an exporter that drops them),
    both, and tracing sampling 1 trace in 100. A variant whose library is not installed
    is left out."""
    variants: dict[str, list[Any]] = {"none": []}
    try:
        from prometheus_client import CollectorRegistry

        from commandbus.metrics import Metrics

        variants["metrics"] = [Metrics(CollectorRegistry())]
    except ImportError:
        pass
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

        from commandbus.otel import Tracing

        class Dropped(SpanExporter):
            def export(self, spans: Any) -> Any:
                from opentelemetry.sdk.trace.export import SpanExportResult

                return SpanExportResult.SUCCESS

        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Dropped()))
        variants["tracing"] = [Tracing(provider)]
        if "metrics" in variants:
            variants["both"] = [*variants["metrics"], Tracing(provider)]
        # What production tracing usually runs: 1 trace in 100 recorded.
        sampled = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.01)))
        sampled.add_span_processor(BatchSpanProcessor(Dropped()))
        variants["traced 1%"] = [Tracing(sampled)]
    except ImportError:
        pass
    return variants


async def hooks_cost(url: str, n: int, rounds: int = 3) -> None:
    """A/B in one run, interleaved: async no-op handlers at c=100 with no hooks, with the
    Prometheus hook, with tracing recording every span, with both, and with tracing
    sampling 1 trace in 100 (parent-based); medians of ``rounds``, cost against none."""
    variants = _observers()
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, hooks in variants.items():
            rates[name].append(await throughput(url, n, 100, plain=False, hooks=hooks or None))
    off = statistics.median(rates["none"])
    print(f"hooks A/B (async no-op, c=100, medians of {rounds}, interleaved):")
    for name, values in rates.items():
        on = statistics.median(values)
        print(f"  {name:<10}{on:>12,.0f}/s   cost {1 - on / off:>6.1%}")


async def limits_cost(url: str, n: int, rounds: int = 3) -> None:
    """A/B in one run, interleaved: unlimited no-op commands at c=100 in a domain without
    concurrency limits, and in one where another type has a limit (every dequeue then
    takes the limits lock and counts running commands of the limited type)."""
    off: list[float] = []
    on: list[float] = []
    for _ in range(rounds):
        off.append(await throughput(url, n, 100, plain=False))
        on.append(await throughput(url, n, 100, plain=False, other_type_limit=5))
    a, b = statistics.median(off), statistics.median(on)
    print(f"limits A/B (async no-op, c=100, medians of {rounds}, interleaved):")
    print(f"  domain without limits   {a:>10,.0f}/s")
    print(f"  another type limited    {b:>10,.0f}/s   cost {1 - b / a:>6.1%}")


if __name__ == "__main__":
    asyncio.run(main())
