"""Prometheus metrics (extra ``commandbus[prometheus]``, built on ``prometheus-client``).

Two parts, use either or both::

    from commandbus.metrics import Metrics, serve_metrics

    metrics = Metrics()                       # a hook: counters and histograms
    worker = Worker(pool, domain="payments", registry=registry, hooks=[metrics])
    bus = CommandBus(pool, hooks=[metrics])
    serve_metrics(9108, metrics=metrics, conninfo=DSN)   # /metrics, with database gauges

* :class:`Metrics` counts what this process sees through hooks: commands sent, handled
  by outcome, retried and parked, replies routed, and histograms of handler duration
  and send-to-start latency.
* :class:`DatabaseCollector` computes gauges on scrape from the database, for every
  domain, whichever process runs the workers: pending, ready, in flight, in the
  troubleshooting queue, and the age of the oldest ready command. One cheap query per
  scrape (the partial indexes hold only moving commands).

Labels are domain, command type, outcome and reply queue: never ids, so cardinality is
bounded by your code, not by traffic. ``import commandbus`` never imports this module or
``prometheus_client``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from commandbus import _sql
from commandbus._validation import check_schema
from commandbus.hooks import CommandSent, Event, HandlerFinished, HandlerStarted, ReplyRouted

__all__ = ["DatabaseCollector", "Metrics", "serve_metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_OUTCOMES = {
    "COMPLETED": "completed",
    "FAILED": "failed",
    "RETRY_SCHEDULED": "retried",
    "MOVED_TO_TROUBLESHOOTING_QUEUE": "parked",
}


class Metrics:
    """A hook that keeps Prometheus counters and histograms of what it sees."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = REGISTRY if registry is None else registry
        kind = ("domain", "command_type")
        self.sent = Counter(
            "commandbus_commands_sent", "Commands sent", kind, registry=self.registry
        )
        self.handled = Counter(
            "commandbus_commands_handled",
            "Handler attempts recorded, by outcome (completed, failed, retried, parked)",
            (*kind, "outcome"),
            registry=self.registry,
        )
        self.retried = Counter(
            "commandbus_commands_retried",
            "Attempts that will be retried",
            kind,
            registry=self.registry,
        )
        self.parked = Counter(
            "commandbus_commands_parked",
            "Commands moved to the troubleshooting queue",
            kind,
            registry=self.registry,
        )
        self.duration = Histogram(
            "commandbus_handler_duration_seconds",
            "Time a handler ran",
            kind,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.waited = Histogram(
            "commandbus_send_to_start_seconds",
            "Time from a command's send to its handler's start",
            kind,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.routed = Counter(
            "commandbus_replies_routed",
            "Replies handled by a reply router, by result",
            ("reply_queue", "result"),
            registry=self.registry,
        )

    def __call__(self, event: Event) -> None:
        if isinstance(event, HandlerFinished):
            outcome = _OUTCOMES.get(event.outcome, event.outcome.lower())
            self.handled.labels(event.domain, event.command_type, outcome).inc()
            self.duration.labels(event.domain, event.command_type).observe(event.duration)
            if outcome == "retried":
                self.retried.labels(event.domain, event.command_type).inc()
            elif outcome == "parked":
                self.parked.labels(event.domain, event.command_type).inc()
        elif isinstance(event, HandlerStarted):
            self.waited.labels(event.domain, event.command_type).observe(event.waited)
        elif isinstance(event, CommandSent):
            self.sent.labels(event.domain, event.command_type).inc()
        elif isinstance(event, ReplyRouted):
            self.routed.labels(event.reply_queue, event.result).inc()


class DatabaseCollector(Collector):
    """Gauges per domain computed on scrape, with one short-lived connection."""

    def __init__(self, conninfo: str, *, schema: str = "commandbus", timeout: int = 5) -> None:
        self.conninfo = conninfo
        self.schema = check_schema(schema)
        self.timeout = timeout

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "pending": GaugeMetricFamily(
                "commandbus_pending",
                "Commands waiting for delivery (due or scheduled)",
                labels=["domain"],
            ),
            "ready": GaugeMetricFamily(
                "commandbus_ready", "Commands deliverable now", labels=["domain"]
            ),
            "in_flight": GaugeMetricFamily(
                "commandbus_in_flight", "Commands leased by a worker", labels=["domain"]
            ),
            "troubleshooting": GaugeMetricFamily(
                "commandbus_troubleshooting",
                "Commands in the troubleshooting queue",
                labels=["domain"],
            ),
            "oldest_ready_age": GaugeMetricFamily(
                "commandbus_oldest_ready_age_seconds",
                "How long the longest-waiting deliverable command has waited for a worker",
                labels=["domain"],
            ),
        }
        up = GaugeMetricFamily(
            "commandbus_database_up", "1 if the last scrape could read the database"
        )
        try:
            rows = self._read()
        except psycopg.Error:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for row in rows:
            for name, family in families.items():
                family.add_metric([row["domain"]], float(row[name] or 0))
        yield up
        yield from families.values()

    def _read(self) -> list[dict[str, Any]]:
        query = _sql.query("metrics_gauges", self.schema)
        with (
            psycopg.connect(self.conninfo, autocommit=True, connect_timeout=self.timeout) as conn,
            psycopg.ClientCursor(conn) as cur,
        ):
            cur.execute(query)
            names = [column.name for column in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def serve_metrics(
    port: int,
    *,
    addr: str = "0.0.0.0",
    metrics: Metrics | None = None,
    conninfo: str | None = None,
    schema: str = "commandbus",
    registry: CollectorRegistry | None = None,
) -> Any:
    """Serve ``/metrics`` on ``port`` from a daemon thread; returns prometheus_client's
    server (``.server_port`` tells the port when ``port`` is 0).

    With ``conninfo``, the database gauges are added to the registry (``metrics``'s
    registry if given, else ``registry``, else prometheus_client's default).
    """
    target = metrics.registry if metrics is not None else registry or REGISTRY
    if conninfo is not None:
        target.register(DatabaseCollector(conninfo, schema=schema))
    server, _thread = start_http_server(port, addr=addr, registry=target)
    return server
