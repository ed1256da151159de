"""Prometheus metrics: counters and histograms fed by hooks, database gauges on scrape,
an HTTP endpoint; and ``import commandbus`` stays free of prometheus_client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from pathlib import Path

import anyio
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    PermanentCommandError,
)
from commandbus.hooks import CommandSent
from commandbus.metrics import DatabaseCollector, Metrics, serve_metrics
from core.helpers import DOMAIN, make_worker, running, wait_for_status, wait_until
from core.test_cli import HANDLERS, _env, db

KIND = {"domain": DOMAIN, "command_type": "Pay"}


async def test_counters_and_histograms_follow_sends_and_outcomes(
    pool: AsyncConnectionPool, schema: str
) -> None:
    metrics = Metrics(CollectorRegistry())
    bus = CommandBus(pool, schema=schema, hooks=[metrics])
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Pay")
    async def pay(command: Command, ctx: HandlerContext) -> None:
        if command.data["broken"]:
            raise PermanentCommandError("BROKEN", "no")

    ok = [uuid.uuid4(), uuid.uuid4()]
    bad = uuid.uuid4()
    for command_id in ok:
        await bus.send(DOMAIN, "Pay", command_id, {"broken": False})
    await bus.send(DOMAIN, "Pay", bad, {"broken": True})
    async with running(make_worker(pool, schema, registry, hooks=[metrics])):
        for command_id in ok:
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        await wait_for_status(bus, DOMAIN, bad, CommandStatus.IN_TROUBLESHOOTING_QUEUE)

    value = metrics.registry.get_sample_value
    assert value("commandbus_commands_sent_total", KIND) == 3
    assert value("commandbus_commands_handled_total", {**KIND, "outcome": "completed"}) == 2
    assert value("commandbus_commands_handled_total", {**KIND, "outcome": "parked"}) == 1
    assert value("commandbus_commands_parked_total", KIND) == 1
    assert value("commandbus_handler_duration_seconds_count", KIND) == 3
    assert value("commandbus_send_to_start_seconds_count", KIND) == 3


async def test_database_gauges_are_read_on_scrape(
    pool: AsyncConnectionPool, bus: CommandBus, schema: str, database_url: str
) -> None:
    for _ in range(3):
        await bus.send(DOMAIN, "Pay", uuid.uuid4(), {})
    await bus.send(DOMAIN, "Pay", uuid.uuid4(), {}, delay=3600)
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(database_url, schema=schema))

    domain = {"domain": DOMAIN}
    assert registry.get_sample_value("commandbus_database_up") == 1
    assert registry.get_sample_value("commandbus_pending", domain) == 4
    assert registry.get_sample_value("commandbus_ready", domain) == 3
    assert registry.get_sample_value("commandbus_in_flight", domain) == 0
    assert registry.get_sample_value("commandbus_troubleshooting", domain) == 0
    age = registry.get_sample_value("commandbus_oldest_ready_age_seconds", domain)
    assert age is not None and 0 <= age < 60


def test_an_unreachable_database_reads_as_down_not_as_a_scrape_error() -> None:
    registry = CollectorRegistry()
    registry.register(DatabaseCollector("postgresql://nobody@127.0.0.1:1/none", timeout=1))
    assert registry.get_sample_value("commandbus_database_up") == 0


async def test_serve_metrics_exposes_counters_and_gauges_over_http(
    bus: CommandBus, database_url: str, schema: str
) -> None:
    await bus.send(DOMAIN, "Pay", uuid.uuid4(), {})
    metrics = Metrics(CollectorRegistry())
    metrics(CommandSent(DOMAIN, "Pay", uuid.uuid4(), 1, 0, False))
    server = serve_metrics(
        0, addr="127.0.0.1", metrics=metrics, conninfo=database_url, schema=schema
    )
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: ASYNC210
            text = response.read().decode()
    finally:
        server.shutdown()
    assert f'commandbus_ready{{domain="{DOMAIN}"}} 1.0' in text
    assert f'commandbus_commands_sent_total{{command_type="Pay",domain="{DOMAIN}"}} 1.0' in text


def test_import_commandbus_does_not_import_prometheus_client() -> None:
    code = "import sys, commandbus; assert 'prometheus_client' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_the_cli_worker_serves_metrics_on_the_port_it_is_given(
    database_url: str, schema: str, bus: CommandBus, tmp_path: Path
) -> None:
    (tmp_path / "cli_handlers.py").write_text(textwrap.dedent(HANDLERS))
    with socket.socket() as probe:  # a free port for the worker to bind
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command_id = uuid.uuid4()
    await bus.send("cli", "Echo", command_id, {"n": 1})
    command = [sys.executable, "-m", "commandbus.cli", *db(database_url, schema)]
    command += ["worker", "cli_handlers:registry", "--domain", "cli", "--metrics-port", str(port)]
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    process = await anyio.open_process(command, env=env, stdout=None, stderr=None)
    async with process:
        try:
            await wait_for_status(bus, "cli", command_id, CommandStatus.COMPLETED, timeout=20)

            async def scraped() -> str | None:
                try:
                    url = f"http://127.0.0.1:{port}/metrics"
                    text = await anyio.to_thread.run_sync(_get, url)
                except OSError:
                    return None
                wanted = 'commandbus_commands_handled_total{command_type="Echo",domain="cli"'
                return text if wanted in text else None

            text = await wait_until(scraped, timeout=20, what="the worker's /metrics")
        finally:
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                await process.wait()
    assert 'outcome="completed"} 1.0' in text
    assert "commandbus_database_up 1.0" in text


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
