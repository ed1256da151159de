"""The shipped alert rules and dashboard against a real Prometheus scraping real workers.

A Prometheus (Debian's ``prometheus`` package; skipped only where its binary is missing)
scrapes a ``commandbus worker --metrics-port`` every second and evaluates the rules of
``commandbus monitoring rules`` made with short thresholds and ``for:`` windows. The test
then causes each condition (parked commands, a worker killed hard, a domain left without
workers, a paused domain, a pruner that fell behind, an exporter that cannot read the
database) and polls Prometheus's HTTP API until each alert fires, within its ``for:``
plus a scrape and an evaluation interval (and a margin for a loaded machine). Last, every
query of the Grafana dashboard must return series.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, CommandStatus, pause_domain
from commandbus.metrics import DatabaseCollector, Metrics, serve_metrics
from commandbus.monitoring import AlertSettings, alert_rules, dashboard, render_rules
from commandbus.monitoring._settings import duration_seconds
from core.helpers import execute, wait_for_status, wait_until
from core.test_cli import _env, db

PROMETHEUS = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="skipped only where the prometheus binary is missing (apt-get install prometheus)",
)

#: Seconds between scrapes and between rule evaluations.
INTERVAL = 1.0
#: What a loaded two-core machine may add to the ideal latency of an alert.
MARGIN = 3.0
#: Heartbeat interval of the test's workers: one killed hard reads stale after 3 of them.
HEARTBEAT = 0.2

SETTINGS = AlertSettings(
    console_url="http://console.test",
    tsq_growth=3,
    tsq_window="20s",
    tsq_for="1s",
    no_worker_for="1s",
    waiting_age="2s",
    waiting_for="1s",
    failure_ratio=0.2,
    failure_window="20s",
    failure_min_count=2,
    failure_for="1s",
    heartbeat_for="1s",
    paused_age="2s",
    paused_for="1s",
    retention="1h",
    pruner_lag="1m",
    pruner_for="1s",
    database_down_for="1s",
)

HANDLERS = f"""
    import commandbus._registry
    from commandbus import HandlerRegistry, PermanentCommandError

    commandbus._registry.HEARTBEAT_INTERVAL_S = {HEARTBEAT}  # read when a worker starts

    registry = HandlerRegistry()

    @registry.handler("pay", "Charge")
    async def charge(command, ctx):
        if command.data.get("fail"):
            raise PermanentCommandError("DECLINED", "card declined")

    @registry.handler("ship", "Ship")
    async def ship(command, ctx):
        return None
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    """A Prometheus server of this test, and its HTTP API."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.AsyncClient(base_url=self.url, timeout=5)

    async def query(self, expr: str) -> list[dict[str, Any]]:
        response = await self.http.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def firing(self) -> list[dict[str, Any]]:
        body = (await self.http.get("/api/v1/alerts")).json()
        return [a for a in body["data"]["alerts"] if a["state"] == "firing"]


@asynccontextmanager
async def _process(command: list[str], log: Path, **env: str) -> AsyncIterator[Process]:
    with log.open("wb") as output:
        process = await anyio.open_process(command, stdout=output, stderr=output, env=_env(**env))
    async with process:
        try:
            yield process
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with anyio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()


@asynccontextmanager
async def _stack(
    database_url: str, schema: str, bus_metrics: Metrics, tmp_path: Path
) -> AsyncIterator[tuple[Prometheus, dict[str, Process], str]]:
    """Workers of ``pay`` (serving /metrics) and ``ship``, this process's exporter (its
    bus's counters, and gauges of an unreachable database), and Prometheus."""
    (tmp_path / "alert_handlers.py").write_text(textwrap.dedent(HANDLERS))
    python_path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    worker_port, prometheus_port = _free_port(), _free_port()
    cli = [sys.executable, "-m", "commandbus.cli", *db(database_url, schema), "worker"]
    cli.append("alert_handlers:registry")
    bus_metrics.registry.register(
        DatabaseCollector("postgresql://nobody@127.0.0.1:1/none", schema=schema, timeout=1)
    )
    exporter = serve_metrics(0, addr="127.0.0.1", metrics=bus_metrics)
    targets = [f"127.0.0.1:{worker_port}", f"127.0.0.1:{exporter.server_port}"]
    (tmp_path / "rules.yml").write_text(render_rules(SETTINGS))
    (tmp_path / "prometheus.yml").write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {
                    "scrape_interval": f"{INTERVAL:g}s",
                    "scrape_timeout": f"{INTERVAL:g}s",
                    "evaluation_interval": f"{INTERVAL:g}s",
                },
                "rule_files": ["rules.yml"],
                "scrape_configs": [
                    {"job_name": "commandbus", "static_configs": [{"targets": targets}]}
                ],
            }
        )
    )
    assert PROMETHEUS is not None
    prometheus_command = [
        PROMETHEUS,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        "--log.level=warn",
    ]
    try:
        async with AsyncExitStack() as stack:
            processes = {
                "pay": await stack.enter_async_context(
                    _process(
                        [*cli, "--domain", "pay", "--metrics-port", str(worker_port)],
                        tmp_path / "pay.log",
                        PYTHONPATH=python_path,
                    )
                ),
                "ship": await stack.enter_async_context(
                    _process(
                        [*cli, "--domain", "ship"], tmp_path / "ship.log", PYTHONPATH=python_path
                    )
                ),
                "prometheus": await stack.enter_async_context(
                    _process(prometheus_command, tmp_path / "prometheus.log")
                ),
            }
            prometheus = Prometheus(prometheus_port)
            stack.push_async_callback(prometheus.http.aclose)
            try:
                yield prometheus, processes, targets[1]
            except BaseException:
                for name in ("pay", "ship", "prometheus"):
                    log = (tmp_path / f"{name}.log").read_text(errors="replace")
                    print(f"--- {name}.log ---\n{log[-4000:]}")
                raise
    finally:
        exporter.shutdown()


async def test_each_alert_fires_and_every_dashboard_query_answers(
    pool: AsyncConnectionPool, schema: str, database_url: str, tmp_path: Path
) -> None:
    bus_metrics = Metrics(CollectorRegistry())
    bus = CommandBus(pool, schema=schema, hooks=[bus_metrics])
    stack = _stack(database_url, schema, bus_metrics, tmp_path)
    async with stack as (prometheus, processes, exporter):
        # Both workers registered, and a first scrape of each target.
        async def scraped() -> bool:
            up = await prometheus.query('up{job="commandbus"} == 1')
            live = await prometheus.query('commandbus_workers{kind="worker"} == 1')
            return len(up) == 2 and {s["metric"]["domain"] for s in live} == {"pay", "ship"}

        await wait_until(scraped, timeout=30, interval=0.2, what="Prometheus scraping both workers")

        # One good command per type: the worker's counters then exist, at 0 for failures.
        for domain, kind in (("pay", "Charge"), ("ship", "Ship")):
            command_id = uuid.uuid4()
            await bus.send(domain, kind, command_id, {})
            await wait_for_status(bus, domain, command_id, CommandStatus.COMPLETED, timeout=20)

        async def primed() -> bool:
            selector = 'commandbus_commands_handled_total{domain="pay", outcome="parked"}'
            return bool(await prometheus.query(selector))

        await wait_until(primed, timeout=10, interval=0.2, what="the failure counters at 0")

        # -- the causes ------------------------------------------------------------------
        caused = time.monotonic()
        processes["ship"].kill()  # killed hard: its row stays, stale after 3 heartbeats
        for _ in range(5):
            await bus.send("pay", "Charge", uuid.uuid4(), {"fail": True})
        for _ in range(3):
            await bus.send("ship", "Ship", uuid.uuid4(), {})
        await pause_domain(pool, "hold", operator="alice", reason="incident", schema=schema)
        for _ in range(2):
            await bus.send("hold", "Report", uuid.uuid4(), {})
        finished = uuid.uuid4()
        await bus.send("archive", "Old", finished, {})
        await execute(
            pool,
            schema,
            "UPDATE {schema}.commands SET status = 'COMPLETED', vt = NULL,"
            " updated_at = now() - interval '3 hours' WHERE command_id = %s",
            [finished],
        )

        # When each condition holds, from the causes on (seconds), and its `for:`.
        onset = {
            "CommandbusTroubleshootingQueueGrowing": 0.0,
            "CommandbusFailureRateHigh": 0.0,
            "CommandbusHeartbeatsMissing": 3 * HEARTBEAT,
            "CommandbusNoLiveWorker": 3 * HEARTBEAT,
            "CommandbusCommandsWaitingTooLong": SETTINGS.seconds("waiting_age"),
            "CommandbusPausedDomainWaiting": SETTINGS.seconds("paused_age"),
            "CommandbusPrunerBehind": 0.0,
            "CommandbusDatabaseUnreachable": 0.0,  # from the start
        }
        expected = {
            "CommandbusTroubleshootingQueueGrowing": {"domain": "pay"},
            "CommandbusFailureRateHigh": {"domain": "pay", "command_type": "Charge"},
            "CommandbusHeartbeatsMissing": {"kind": "worker", "domain": "ship"},
            "CommandbusNoLiveWorker": {"domain": "ship"},
            "CommandbusCommandsWaitingTooLong": {"domain": "ship"},
            "CommandbusPausedDomainWaiting": {"domain": "hold"},
            "CommandbusPrunerBehind": {"job": "commandbus"},
            "CommandbusDatabaseUnreachable": {"instance": exporter},
        }
        fired: dict[str, float] = {}
        alerts: dict[str, dict[str, Any]] = {}

        async def all_fired() -> bool:
            now = time.monotonic() - caused
            for alert in await prometheus.firing():
                name = alert["labels"]["alertname"]
                wanted = expected.get(name)
                matches = wanted is not None and name not in fired
                if matches and all(alert["labels"].get(k) == v for k, v in wanted.items()):
                    fired[name] = now
                    alerts[name] = alert
            late = {
                name: bound
                for name in expected
                if name not in fired and now > (bound := _bound(name, onset[name]))
            }
            assert not late, f"not firing by their deadlines (s): {late}; fired: {fired}"
            return len(fired) == len(expected)

        await wait_until(all_fired, timeout=60, interval=0.1, what="every alert to fire")
        print("alert latencies from the cause (s):", {k: round(v, 2) for k, v in fired.items()})

        # The links go to the page that shows the cause.
        console = {name: alert["annotations"]["console_url"] for name, alert in alerts.items()}
        assert console["CommandbusTroubleshootingQueueGrowing"] == (
            "http://console.test/tsq?domain=pay&type=Charge"
            "&error_type=PermanentCommandError&error_code=DECLINED"
        )
        assert console["CommandbusNoLiveWorker"] == "http://console.test/workers?domain=ship"
        assert console["CommandbusPausedDomainWaiting"] == (
            "http://console.test/commands?domain=hold&status=PENDING"
        )
        # The paused domain is the paused alert's only: neither "no worker" nor "waiting".
        names = {
            (a["labels"]["alertname"], a["labels"].get("domain")) for a in await prometheus.firing()
        }
        assert ("CommandbusNoLiveWorker", "hold") not in names
        assert ("CommandbusCommandsWaitingTooLong", "hold") not in names
        assert ("CommandbusNoLiveWorker", "pay") not in names

        # -- the dashboard: every query answers with series ------------------------------
        problems = []
        for title, expr in _dashboard_queries():
            try:
                result = await prometheus.query(expr)
            except AssertionError as error:
                problems.append(f"{title}: {error}")
                continue
            if not result:
                problems.append(f"{title}: no series for {expr}")
        assert not problems, "\n".join(problems)


def _bound(name: str, onset: float) -> float:
    """When the alert must be firing: its condition's onset, its ``for:``, one scrape and
    one evaluation, and a margin for a loaded machine."""
    (rule,) = [rule for rule in alert_rules(SETTINGS) if rule.alert == name]
    return onset + duration_seconds("for", rule.for_, zero=True) + 2 * INTERVAL + MARGIN


def _dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every target, with the variables set to "all"."""
    board = json.loads(dashboard())
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "20s")
            expr = expr.replace("$job", ".*").replace("$domain", ".*")
            assert "$" not in expr, f"{panel['title']}: an unknown variable in {expr}"
            found.append((panel["title"], expr))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"].replace("$job", ".*")
            metric = query.removeprefix("label_values(").split(",")[0]
            found.append((f"variable {variable['name']}", metric))
    return found
