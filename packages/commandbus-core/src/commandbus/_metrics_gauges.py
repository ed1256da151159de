"""The database gauges of :mod:`commandbus.metrics`: read on each scrape, for every domain.

Four statements on one short-lived connection: the moving commands and pauses
(``metrics_gauges.sql``, over the partial indexes of pending and leased commands: the
backlog, never the history), the troubleshooting queue by error group
(``metrics_troubleshooting.sql``), the worker registry (``metrics_workers.sql``) and the
oldest finished command the pruner may delete (``metrics_oldest_finished.sql``, one index
probe). The troubleshooting queue's reading is the one that grows with the queue (it
reads every parked row: about a second at a million): a reading is reused until it is
:data:`REUSE_FACTOR` times as old as it took, so it costs an exporter at most about a
thirtieth of a server core, and a small queue is read at every scrape.

A domain, once seen, keeps reporting: a domain that drained reports 0, not nothing, so
that ``commandbus_pending{domain="payments"} == 0`` is a fact and not a missing series
(alert rules and dashboards treat a missing series as "unknown"). Domains come from the
commands, the pauses, the worker registry, and this collector's earlier scrapes.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from commandbus import _sql
from commandbus._registry import STALE_AFTER_INTERVALS
from commandbus._validation import check_positive_int, check_schema

__all__ = ["DatabaseCollector"]

#: Gauges per domain: (metric name, help, column of metrics_gauges.sql).
_PER_DOMAIN = (
    ("commandbus_pending", "Commands waiting for delivery (due or scheduled)", "pending"),
    ("commandbus_ready", "Commands deliverable now", "ready"),
    ("commandbus_in_flight", "Commands leased by a worker", "in_flight"),
    (
        "commandbus_oldest_ready_age_seconds",
        "How long the longest-waiting deliverable command has waited for a worker (0: none)",
        "oldest_ready_age",
    ),
    ("commandbus_domain_paused", "1 if the domain is paused (commandbus pause)", "paused"),
)
_ERROR_GROUP = ["domain", "command_type", "error_type", "error_code"]
#: A reading of the troubleshooting queue is reused until this many times as old as it took.
REUSE_FACTOR = 30.0


@dataclass
class _Scrape:
    """What one scrape read, by domain (and error group, and registry kind)."""

    domains: dict[str, dict[str, float]] = field(default_factory=dict)
    parked: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    error_groups: list[tuple[list[str], float]] = field(default_factory=list)
    workers: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    oldest_finished_age: float = 0.0


class DatabaseCollector(Collector):
    """Gauges per domain computed on scrape, with one short-lived connection.

    ``max_error_groups`` caps ``commandbus_troubleshooting_by_error`` to the largest
    groups (labels are the domain, command type, error type and code: bounded by your
    code, but a cap keeps a scrape small whatever the handlers raise).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "commandbus",
        timeout: int = 5,
        max_error_groups: int = 100,
    ) -> None:
        self.conninfo = conninfo
        self.schema = check_schema(schema)
        self.timeout = timeout
        self.max_error_groups = check_positive_int("max_error_groups", max_error_groups)
        self._lock = threading.Lock()  # scrapes may run in several server threads
        self._domains: set[str] = set()
        self._registered: set[tuple[str, str]] = set()
        # The last reading of metrics_troubleshooting.sql and until when it is reused.
        self._parked_rows: list[dict[str, Any]] = []
        self._parked_until = -1.0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "commandbus_database_up", "1 if the last scrape could read the database"
        )
        try:
            scrape = self._read()
        except psycopg.Error:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        with self._lock:
            self._domains.update(scrape.domains, scrape.parked)
            self._domains.update(d for kind, d in scrape.workers if kind == "worker")
            self._registered.update(scrape.workers)
            self._registered.update(("worker", d) for d in self._domains)
            domains = sorted(self._domains)
            registered = sorted(self._registered)
        for name, text, column in _PER_DOMAIN:
            family = GaugeMetricFamily(name, text, labels=["domain"])
            for domain in domains:
                family.add_metric([domain], scrape.domains.get(domain, {}).get(column, 0.0))
            yield family
        family = GaugeMetricFamily(
            "commandbus_troubleshooting",
            "Commands in the troubleshooting queue",
            labels=["domain"],
        )
        for domain in domains:
            family.add_metric([domain], scrape.parked.get(domain, 0.0))
        yield family
        family = GaugeMetricFamily(
            "commandbus_troubleshooting_by_error",
            "Commands in the troubleshooting queue by error group (the largest groups)",
            labels=_ERROR_GROUP,
        )
        for labels, count in scrape.error_groups[: self.max_error_groups]:
            family.add_metric(labels, count)
        yield family
        yield from self._registry_families(scrape, registered)
        family = GaugeMetricFamily(
            "commandbus_oldest_finished_age_seconds",
            "Age of the oldest finished command the pruner may delete (0: none); above "
            "the retention, the pruner is behind",
        )
        family.add_metric([], scrape.oldest_finished_age)
        yield family

    def _registry_families(
        self, scrape: _Scrape, registered: list[tuple[str, str]]
    ) -> Iterator[GaugeMetricFamily]:
        live = GaugeMetricFamily(
            "commandbus_workers",
            "Registered workers (and reply routers) whose heartbeat is fresh, by domain "
            "(a router's: its reply queue)",
            labels=["kind", "domain"],
        )
        stale = GaugeMetricFamily(
            "commandbus_workers_stale",
            f"Registered workers (and reply routers) whose heartbeat is older than "
            f"{STALE_AFTER_INTERVALS} of their intervals",
            labels=["kind", "domain"],
        )
        for key in registered:
            counts = scrape.workers.get(key, (0.0, 0.0))
            live.add_metric(list(key), counts[0])
            stale.add_metric(list(key), counts[1])
        yield live
        yield stale

    def _read(self) -> _Scrape:
        scrape = _Scrape()
        # ClientCursor: parameters bound client-side, so PgBouncer in transaction mode
        # (no prepared statements) serves a scrape like any other client.
        with (
            psycopg.connect(self.conninfo, autocommit=True, connect_timeout=self.timeout) as conn,
            psycopg.ClientCursor(conn) as cur,
        ):
            for row in _rows(cur, "metrics_gauges", self.schema):
                scrape.domains[row["domain"]] = {
                    column: float(row[column]) for _name, _text, column in _PER_DOMAIN
                }
            for row in self._troubleshooting(cur):
                scrape.parked[row["domain"]] += row["parked"]
                labels = [row[name] for name in _ERROR_GROUP]
                scrape.error_groups.append((labels, float(row["parked"])))
            params = {"stale_after": float(STALE_AFTER_INTERVALS)}
            for row in _rows(cur, "metrics_workers", self.schema, params):
                scrape.workers[(row["kind"], row["domain"])] = (row["live"], row["stale"])
            for row in _rows(cur, "metrics_oldest_finished", self.schema):
                scrape.oldest_finished_age = max(0.0, float(row["age"]))
        return scrape

    def _troubleshooting(self, cur: psycopg.ClientCursor[Any]) -> list[dict[str, Any]]:
        """The queue by error group: read again only once the last reading is
        :data:`REUSE_FACTOR` times as old as it took to read."""
        started = time.monotonic()
        with self._lock:
            if started < self._parked_until:
                return self._parked_rows
        rows = _rows(cur, "metrics_troubleshooting", self.schema)
        done = time.monotonic()
        with self._lock:
            self._parked_rows = rows
            self._parked_until = done + (done - started) * (REUSE_FACTOR - 1)
        return rows


def _rows(
    cur: psycopg.ClientCursor[Any], name: str, schema: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    cur.execute(_sql.query(name, schema), params)
    names = [column.name for column in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
