"""Alert rules and a Grafana dashboard for the metrics of :mod:`commandbus.metrics`.

Shipped with the package so that the rules always match the metrics of the installed
version::

    commandbus monitoring rules --console-url https://ops.example.com > alerts.yml
    commandbus monitoring dashboard > commandbus-dashboard.json

or from code: ``render_rules(AlertSettings(console_url=..., waiting_age="5m"))`` and
``dashboard()``. Each alert has a runbook section in docs/operations.md ("Alerts"), and
``monitoring/`` in the repository holds both files rendered with the defaults, with the
rules' ``promtool test rules`` unit tests. Nothing here imports prometheus_client.
"""

from __future__ import annotations

from importlib import resources

from commandbus.monitoring._rules import Rule, alert_rules, render_rules
from commandbus.monitoring._settings import AlertSettings

__all__ = ["AlertSettings", "Rule", "alert_rules", "dashboard", "render_rules"]


def dashboard() -> str:
    """The Grafana dashboard (JSON): throughput, failures, depth, waiting, latency, the
    troubleshooting queue by error, workers. Import it in Grafana (Dashboards, New,
    Import) and pick the Prometheus data source that scrapes the workers."""
    return resources.files(__name__).joinpath("grafana-dashboard.json").read_text("utf-8")
