"""OpenTelemetry tracing (commandbus.otel) against a real server, read back through the
SDK's in-memory exporter: the send span, the handler span as its child, failures, plain
``def`` handlers, a saga as one trace, and a worker in another process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from psycopg_pool import AsyncConnectionPool

import commandbus.otel
from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    ProcessStatus,
    TransientCommandError,
)
from commandbus.hooks import Middleware, Sending
from core._sagas import saga_env
from core.helpers import DOMAIN, execute, make_worker, running, wait_for_status, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def tracing(provider: TracerProvider) -> commandbus.otel.Tracing:
    return commandbus.otel.Tracing(provider)


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def wait_for_spans(
    exporter: InMemorySpanExporter, name: str, count: int = 1
) -> list[ReadableSpan]:
    async def probe() -> list[ReadableSpan] | None:
        found = spans(exporter, name)
        return found if len(found) >= count else None

    return await wait_until(probe, what=f"{count} span(s) named {name!r}")


async def test_handler_span_is_a_child_of_the_send_span_with_messaging_attributes(
    pool: AsyncConnectionPool, schema: str, exporter: InMemorySpanExporter, tracing: Any
) -> None:
    bus = CommandBus(pool, schema=schema, hooks=[tracing])
    registry = HandlerRegistry()
    seen: list[int] = []

    @registry.handler(DOMAIN, "Ship")
    async def ship(command: Command, ctx: HandlerContext) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    command_id = uuid.uuid4()
    correlation_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry, hooks=[tracing])) as worker:
        await bus.send(DOMAIN, "Ship", command_id, {"n": 1}, correlation_id=correlation_id)
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        (process,) = await wait_for_spans(exporter, f"process {DOMAIN}")

    (send,) = spans(exporter, f"send {DOMAIN}")
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert seen == [send.context.trace_id]  # the handler ran inside its span
    assert send.attributes is not None and process.attributes is not None
    assert dict(send.attributes) == {
        "messaging.system": "commandbus",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": DOMAIN,
        "messaging.message.id": str(command_id),
        "messaging.message.conversation_id": str(correlation_id),
        "commandbus.command_type": "Ship",
    }
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.message.id"] == str(command_id)
    assert process.attributes["messaging.client.id"] == worker.name
    assert process.attributes["commandbus.attempt"] == 1
    assert process.attributes["commandbus.outcome"] == "COMPLETED"
    assert process.status.status_code == StatusCode.UNSET
    # The stored context is the send span's W3C traceparent.
    (stored,) = await execute(
        pool,
        schema,
        "SELECT trace_context FROM {schema}.commands WHERE command_id = %s",
        (command_id,),
    )
    assert stored[0]["traceparent"].split("-")[1] == f"{send.context.trace_id:032x}"


async def test_a_send_inside_a_span_is_its_child(
    pool: AsyncConnectionPool, schema: str, exporter: InMemorySpanExporter, provider: Any
) -> None:
    bus = CommandBus(pool, schema=schema, hooks=[commandbus.otel.Tracing(provider)])
    with provider.get_tracer("app").start_as_current_span("POST /orders") as request:
        await bus.send(DOMAIN, "Ship", uuid.uuid4(), {})
    (send,) = spans(exporter, f"send {DOMAIN}")
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id


async def test_failed_attempts_set_error_status_and_each_attempt_is_a_span(
    pool: AsyncConnectionPool, schema: str, exporter: InMemorySpanExporter, tracing: Any
) -> None:
    bus = CommandBus(pool, schema=schema, hooks=[tracing])
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Flaky")
    async def flaky(command: Command, ctx: HandlerContext) -> None:
        if ctx.attempt == 1:
            raise TransientCommandError("GATEWAY_DOWN", "the gateway timed out")

    command_id = uuid.uuid4()
    async with running(make_worker(pool, schema, registry, hooks=[tracing])):
        await bus.send(DOMAIN, "Flaky", command_id, {})
        await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        first, second = sorted(
            await wait_for_spans(exporter, f"process {DOMAIN}", 2),
            key=lambda s: s.attributes["commandbus.attempt"] if s.attributes else 0,
        )

    (send,) = spans(exporter, f"send {DOMAIN}")
    assert first.parent is not None and second.parent is not None
    assert first.parent.span_id == second.parent.span_id == send.context.span_id
    assert first.status.status_code == StatusCode.ERROR
    assert first.status.description == "TransientCommandError: the gateway timed out"
    assert first.attributes is not None
    assert first.attributes["commandbus.outcome"] == "RETRY_SCHEDULED"
    assert first.attributes["error.type"] == "GATEWAY_DOWN"
    assert [e.name for e in first.events] == ["exception"]
    assert second.status.status_code == StatusCode.UNSET


async def test_a_plain_def_handler_runs_in_its_span_and_what_it_sends_joins_the_trace(
    pool: AsyncConnectionPool, schema: str, exporter: InMemorySpanExporter
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    commandbus.otel.instrument(provider)  # every component, without hooks=
    try:
        bus = CommandBus(pool, schema=schema)
        registry = HandlerRegistry()
        seen: list[int] = []
        loop = asyncio.get_running_loop()

        @registry.handler(DOMAIN, "Parent")
        def parent(command: Command, ctx: HandlerContext) -> None:
            seen.append(trace.get_current_span().get_span_context().span_id)
            asyncio.run_coroutine_threadsafe(
                bus.send(DOMAIN, "Child", uuid.uuid4(), {}), loop
            ).result(10)

        @registry.handler(DOMAIN, "Child")
        def child(command: Command, ctx: HandlerContext) -> None:
            pass

        async with running(make_worker(pool, schema, registry)):
            await bus.send(DOMAIN, "Parent", uuid.uuid4(), {})
            await wait_for_spans(exporter, f"process {DOMAIN}", 2)
    finally:
        commandbus.otel.uninstrument()
        provider.shutdown()

    finished = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1
    by_id = {s.context.span_id: s for s in finished}
    parent_span = next(
        s
        for s in finished
        if s.attributes
        and s.attributes.get("commandbus.command_type") == "Parent"
        and s.kind == SpanKind.CONSUMER
    )
    assert seen == [parent_span.context.span_id]
    child_send = next(
        s
        for s in finished
        if s.kind == SpanKind.PRODUCER
        and s.parent is not None
        and s.parent.span_id == parent_span.context.span_id
    )
    assert child_send.attributes is not None
    assert child_send.attributes["commandbus.command_type"] == "Child"
    child_process = next(
        s
        for s in finished
        if s.kind == SpanKind.CONSUMER
        and s.parent is not None
        and s.parent.span_id == child_send.context.span_id
    )
    assert by_id[child_process.parent.span_id] is child_send  # type: ignore[union-attr]


async def test_a_three_step_saga_is_one_trace(
    pool: AsyncConnectionPool, schema: str, exporter: InMemorySpanExporter, provider: Any
) -> None:
    commandbus.otel.instrument(provider)
    try:
        async with saga_env(pool, schema) as env:
            process_id = await env.start_order("o-1", 250)
            await env.wait_status(process_id, ProcessStatus.COMPLETED)
            await wait_for_spans(exporter, "process order-replies", 3)
    finally:
        commandbus.otel.uninstrument()

    finished = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1, [s.name for s in finished]
    names = [s.name for s in sorted(finished, key=lambda s: s.start_time or 0)]
    assert names.count("send orders") == 3
    assert names.count("process orders") == 3
    assert names.count("process order-replies") == 3
    # Each step after the first is sent from inside the router's span for the reply
    # before it: one causal chain, not three siblings.
    routed = {s.context.span_id for s in finished if s.name == "process order-replies"}
    chained = [
        s
        for s in finished
        if s.name == "send orders" and s.parent is not None and s.parent.span_id in routed
    ]
    assert len(chained) == 2


async def test_tracing_off_stores_nothing(pool: AsyncConnectionPool, schema: str) -> None:
    bus = CommandBus(pool, schema=schema)
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Ship", command_id, {})
    rows = await execute(
        pool,
        schema,
        "SELECT trace_context FROM {schema}.commands WHERE command_id = %s",
        (command_id,),
    )
    assert rows == [(None,)]


async def test_a_failing_middleware_is_logged_once_and_the_work_goes_on(
    pool: AsyncConnectionPool, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Middleware):
        def sending(self, send: Sending) -> Any:
            raise RuntimeError("boom")

    bus = CommandBus(pool, schema=schema, hooks=[Broken()])
    with caplog.at_level(logging.ERROR, logger="commandbus.hooks"):
        await bus.send(DOMAIN, "Ship", uuid.uuid4(), {})
        await bus.send(DOMAIN, "Ship", uuid.uuid4(), {})
    assert len(await execute(pool, schema, "SELECT 1 FROM {schema}.commands")) == 2
    assert [r.message.split(" (")[0] for r in caplog.records].count(
        f"hook {bus.hooks.hooks[0]!r} failed on Sending"
    ) == 1


async def test_a_worker_in_another_process_continues_the_senders_trace(
    pool: AsyncConnectionPool,
    schema: str,
    database_url: str,
    exporter: InMemorySpanExporter,
    tracing: Any,
    tmp_path: Path,
) -> None:
    bus = CommandBus(pool, schema=schema, hooks=[tracing])
    command_id = uuid.uuid4()
    await bus.send(DOMAIN, "Ship", command_id, {})
    out = tmp_path / "spans.json"
    script = Path(__file__).with_name("_traced_worker.py")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        database_url,
        schema,
        DOMAIN,
        str(out),
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()

    (send,) = spans(exporter, f"send {DOMAIN}")
    (remote,) = json.loads(out.read_text())
    assert remote["name"] == f"process {DOMAIN}"
    assert remote["trace_id"] == send.context.trace_id
    assert remote["parent_span_id"] == send.context.span_id
    assert remote["pid"] != os.getpid()


async def test_the_sync_outbox_send_is_traced_in_the_callers_thread(
    database_url: str,
    pool: AsyncConnectionPool,
    schema: str,
    exporter: InMemorySpanExporter,
    provider: Any,
) -> None:
    from commandbus_sync import SyncCommandBus, SyncRuntime

    command_id = uuid.uuid4()

    def in_a_thread() -> None:
        runtime = SyncRuntime()
        try:
            bus = SyncCommandBus(
                conninfo=database_url,
                runtime=runtime,
                schema=schema,
                hooks=[commandbus.otel.Tracing(provider)],
            )
            tracer = provider.get_tracer("app")
            with tracer.start_as_current_span("view"), psycopg.connect(database_url) as conn:
                bus.send(DOMAIN, "Ship", command_id, {}, conn=conn)
        finally:
            runtime.shutdown()

    await asyncio.to_thread(in_a_thread)
    (view,) = spans(exporter, "view")
    (send,) = spans(exporter, f"send {DOMAIN}")
    assert send.parent is not None and send.parent.span_id == view.context.span_id
    (stored,) = await execute(
        pool,
        schema,
        "SELECT trace_context FROM {schema}.commands WHERE command_id = %s",
        (command_id,),
    )
    assert f"{send.context.span_id:016x}" in stored[0]["traceparent"]


def test_import_commandbus_does_not_import_opentelemetry() -> None:
    code = "import sys, commandbus; assert 'opentelemetry' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
