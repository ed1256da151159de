"""A traced worker process for the tracing test: runs until one command completes, then
writes the spans it exported as JSON.

Usage: python _traced_worker.py DATABASE_URL SCHEMA DOMAIN OUT_FILE
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from psycopg_pool import AsyncConnectionPool

import commandbus.otel
from commandbus import Command, HandlerContext, HandlerRegistry, Worker


async def main(url: str, schema: str, domain: str) -> list[dict[str, object]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    commandbus.otel.instrument(provider)
    registry = HandlerRegistry()
    handled = asyncio.Event()

    @registry.handler(domain, "Ship")
    async def ship(command: Command, ctx: HandlerContext) -> None:
        handled.set()

    async with AsyncConnectionPool(url, min_size=1, max_size=4) as pool:
        worker = Worker(
            pool, domain=domain, registry=registry, concurrency=2, poll_interval=0.05, schema=schema
        )
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(handled.wait(), 30)
        await worker.stop(10)  # the span ends with the handler; stop records the outcome
        await task
    return [
        {
            "name": s.name,
            "trace_id": s.context.trace_id,
            "parent_span_id": None if s.parent is None else s.parent.span_id,
            "pid": os.getpid(),
        }
        for s in exporter.get_finished_spans()
    ]


if __name__ == "__main__":
    url, schema, domain, out = sys.argv[1:5]
    Path(out).write_text(json.dumps(asyncio.run(main(url, schema, domain))))
