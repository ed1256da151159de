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
  troubleshooting queue (also by error group), the age of the oldest ready command,
  paused or not, live and stale workers, and the age of the oldest finished command the
  pruner may delete. A domain that drained reports 0, not nothing. Four short
  statements per scrape (the partial indexes hold only moving and parked commands).

Labels are domain, command type, outcome and reply queue: never ids, so cardinality is
bounded by your code, not by traffic. ``import commandbus`` never imports this module or
``prometheus_client``.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from commandbus._metrics_gauges import DatabaseCollector
from commandbus.hooks import CommandSent, Event, HandlerFinished, HandlerStarted, ReplyRouted

__all__ = ["DatabaseCollector", "Metrics", "serve_metrics"]

# Up to an hour: a send-to-start latency of minutes (workers down, a paused domain) still
# lands in a bucket, not only in +Inf.
_LATENCY_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    *(60, 300, 900, 3600),
)
_OUTCOMES = {  # audit event -> the outcome label
    "COMPLETED": "completed",
    "FAILED": "failed",
    "RETRY_SCHEDULED": "retried",
    "MOVED_TO_TROUBLESHOOTING_QUEUE": "parked",
    "OPERATOR_CANCEL": "canceled",
}


class _Histogram:
    """Bucket counts and a sum, kept with plain Python (one ``bisect`` per observation)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(_LATENCY_BUCKETS, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*_LATENCY_BUCKETS, math.inf), self.counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == math.inf else repr(float(bound)), running))
        return cumulative


class Metrics(Collector):
    """A hook that counts what it sees, and the Prometheus collector that reports it.

    Observing costs a dictionary update (and a ``bisect`` for histograms) per event;
    Prometheus families are built only when scraped. Register it once per process (the
    constructor does, on ``registry`` or prometheus_client's default registry).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = REGISTRY if registry is None else registry
        self._lock = threading.Lock()  # updates on the event loop, reads on scrape
        self._sent: Counter[tuple[str, str]] = Counter()
        self._handled: Counter[tuple[str, str, str]] = Counter()
        self._routed: Counter[tuple[str, str]] = Counter()
        self._duration: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self._waited: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self.registry.register(self)

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, HandlerFinished):
                kind = (event.domain, event.command_type)
                self._first_sight(kind)
                self._handled[(*kind, _OUTCOMES.get(event.outcome, event.outcome))] += 1
                self._duration[kind].observe(event.duration)
            elif isinstance(event, HandlerStarted):
                kind = (event.domain, event.command_type)
                self._first_sight(kind)
                self._waited[kind].observe(event.waited)
            elif isinstance(event, CommandSent):
                self._sent[(event.domain, event.command_type)] += 1
            elif isinstance(event, ReplyRouted):
                self._routed[(event.reply_queue, event.result)] += 1

    def _first_sight(self, kind: tuple[str, str]) -> None:
        """Every outcome of a command type starts at 0 when the type is first seen: a
        series that appears already at 1 is not an increase to ``rate()`` (Prometheus
        starts counting from its first sample), so the first failures would be missed."""
        if (*kind, "completed") not in self._handled:
            for outcome in _OUTCOMES.values():
                self._handled[(*kind, outcome)] += 0

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sent, handled, routed = dict(self._sent), dict(self._handled), dict(self._routed)
            duration = {k: (h.buckets(), h.total) for k, h in self._duration.items()}
            waited = {k: (h.buckets(), h.total) for k, h in self._waited.items()}
        kind = ["domain", "command_type"]
        family = CounterMetricFamily("commandbus_commands_sent", "Commands sent", labels=kind)
        for labels, value in sent.items():
            family.add_metric(list(labels), value)
        yield family
        family = CounterMetricFamily(
            "commandbus_commands_handled",
            "Handler attempts recorded, by outcome (completed, failed, retried, parked, canceled)",
            labels=[*kind, "outcome"],
        )
        for outcome_labels, value in handled.items():
            family.add_metric(list(outcome_labels), value)
        yield family
        for name, outcome, text in (
            ("commandbus_commands_retried", "retried", "Attempts that will be retried"),
            ("commandbus_commands_parked", "parked", "Commands moved to troubleshooting"),
        ):
            family = CounterMetricFamily(name, text, labels=kind)
            for (domain, command_type, label), value in handled.items():
                if label == outcome:
                    family.add_metric([domain, command_type], value)
            yield family
        for name, text, histograms in (
            ("commandbus_handler_duration_seconds", "Time a handler ran", duration),
            (
                "commandbus_send_to_start_seconds",
                "Time from a command becoming deliverable (sent, due, retried) to its "
                "handler's start",
                waited,
            ),
        ):
            histogram = HistogramMetricFamily(name, text, labels=kind)
            for labels, (buckets, total) in histograms.items():
                histogram.add_metric(list(labels), buckets, total)
            yield histogram
        family = CounterMetricFamily(
            "commandbus_replies_routed",
            "Replies handled by a reply router, by result",
            labels=["reply_queue", "result"],
        )
        for labels, value in routed.items():
            family.add_metric(list(labels), value)
        yield family


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
