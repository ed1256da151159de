"""The alert rules, written once as data and rendered to a Prometheus rules file.

Every expression aggregates across the processes that serve the same metrics (several
workers each report the database gauges: ``max``; each counts its own handler attempts:
``sum``), keeping the domain and the ``group_by`` labels that tell deployments apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from commandbus.monitoring._settings import AlertSettings

__all__ = ["GROWTH", "Rule", "alert_rules", "recording_rules", "render_rules"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One alerting rule; ``console`` is the link to the console page showing the cause."""

    alert: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    console: str

    @property
    def anchor(self) -> str:
        """Its runbook's section in docs/operations.md (a heading named after the alert)."""
        return self.alert.lower()


def _label(name: str) -> str:
    return "{{ $labels." + name + " | urlquery }}"


def alert_rules(settings: AlertSettings | None = None) -> list[Rule]:
    """The rules with ``settings`` (the defaults if None), in the order of the runbook."""
    s = AlertSettings() if settings is None else settings
    group = s.labels

    def by(*labels: str) -> str:
        names = (*group, *labels)
        return f" by ({', '.join(names)}) " if names else " "

    def on(*labels: str) -> str:
        return f" on ({', '.join((*group, *labels))}) "

    url = s.console_url
    domain = _label("domain")
    failed = "|".join(s.outcomes)
    top_group = _top_error_group(group)
    return [
        Rule(
            "CommandbusTroubleshootingQueueGrowing",
            f"max{by('domain')}(commandbus_troubleshooting"
            f" - min_over_time(commandbus_troubleshooting[{s.tsq_window}])) >= {s.tsq_growth}",
            s.tsq_for,
            "warning",
            "Troubleshooting queue of {{ $labels.domain }} is growing",
            "{{ $value | humanize }} more commands in the troubleshooting queue of domain "
            "{{ $labels.domain }} than at its lowest in the last " + s.tsq_window + " (threshold "
            f"{s.tsq_growth}). They wait for an operator: fix the cause, then retry, cancel "
            "or complete them.",
            f"{url}/tsq?domain={domain}{top_group}",
        ),
        Rule(
            "CommandbusNoLiveWorker",
            f"max{by('domain')}(commandbus_ready) > 0\n"
            f'unless{on("domain")}max{by("domain")}(commandbus_workers{{kind="worker"}}) > 0\n'
            f"unless{on('domain')}max{by('domain')}(commandbus_domain_paused) > 0",
            s.no_worker_for,
            "critical",
            "No live worker for domain {{ $labels.domain }}",
            "{{ $value | humanize }} commands of domain {{ $labels.domain }} are ready and no "
            "worker of the domain has a fresh heartbeat: nothing will run them.",
            f"{url}/workers?domain={domain}",
        ),
        Rule(
            "CommandbusCommandsWaitingTooLong",
            f"max{by('domain')}(commandbus_oldest_ready_age_seconds)"
            f" > {s.seconds('waiting_age'):g}\n"
            f"unless{on('domain')}max{by('domain')}(commandbus_domain_paused) > 0",
            s.waiting_for,
            "warning",
            "Commands of {{ $labels.domain }} wait too long for a worker",
            "The oldest ready command of domain {{ $labels.domain }} has waited "
            "{{ $value | humanizeDuration }} for a worker (threshold " + s.waiting_age + "): "
            "too few workers, slow handlers, or a limit reached.",
            f"{url}/commands?domain={domain}&status=PENDING",
        ),
        Rule(
            "CommandbusFailureRateHigh",
            f"(\n  sum{by('domain', 'command_type')}"
            f'(rate(commandbus_commands_handled_total{{outcome=~"{failed}"}}[{s.failure_window}]))\n'
            f"/\n  sum{by('domain', 'command_type')}"
            f"(rate(commandbus_commands_handled_total[{s.failure_window}]))\n"
            f") > {s.failure_ratio:g}\n"
            f"and{on('domain', 'command_type')}sum{by('domain', 'command_type')}"
            f'(increase(commandbus_commands_handled_total{{outcome=~"{failed}"}}[{s.failure_window}]))'
            f" >= {s.failure_min_count}",
            s.failure_for,
            "warning",
            "Handlers of {{ $labels.domain }}/{{ $labels.command_type }} fail often",
            "{{ $value | humanizePercentage }} of the handler attempts of "
            "{{ $labels.domain }}/{{ $labels.command_type }} in the last "
            f"{s.failure_window} ended {' or '.join(s.outcomes)} "
            f"(threshold {s.failure_ratio * 100:g}%).",
            f"{url}/tsq?domain={domain}&type={_label('command_type')}",
        ),
        Rule(
            "CommandbusHeartbeatsMissing",
            f"max{by('kind', 'domain')}(commandbus_workers_stale) > 0",
            s.heartbeat_for,
            "warning",
            "A {{ $labels.kind }} of {{ $labels.domain }} stopped sending heartbeats",
            "{{ $value | humanize }} registered {{ $labels.kind }}(s) of {{ $labels.domain }} "
            "sent no heartbeat for over three intervals: killed hard, hung, or cut off from "
            "the database. Their leased commands run again when the leases expire.",
            f"{url}/workers?domain={domain}",
        ),
        Rule(
            "CommandbusPausedDomainWaiting",
            f"max{by('domain')}(commandbus_oldest_ready_age_seconds)"
            f" > {s.seconds('paused_age'):g}\n"
            f"and{on('domain')}max{by('domain')}(commandbus_domain_paused) > 0",
            s.paused_for,
            "warning",
            "Domain {{ $labels.domain }} is paused with work waiting",
            "Domain {{ $labels.domain }} is paused and its oldest ready command has waited "
            "{{ $value | humanizeDuration }} (threshold " + s.paused_age + "). Resume it "
            "(commandbus resume {{ $labels.domain }}) once the incident is over.",
            f"{url}/commands?domain={domain}&status=PENDING",
        ),
        Rule(
            "CommandbusPrunerBehind",
            f"max{by()}(commandbus_oldest_finished_age_seconds)"
            f" > {s.seconds('retention') + s.seconds('pruner_lag'):g}",
            s.pruner_for,
            "warning",
            "The pruner is behind",
            "The oldest finished command the pruner may delete finished "
            "{{ $value | humanizeDuration }} ago; the retention is "
            + s.retention
            + " (plus "
            + s.pruner_lag
            + "). No worker runs the pruner, or its rounds fail or fall behind.",
            f"{url}/workers",
        ),
        Rule(
            "CommandbusDatabaseUnreachable",
            "commandbus_database_up == 0",
            s.database_down_for,
            "critical",
            "{{ $labels.instance }} cannot read the commandbus database",
            "The metrics exporter {{ $labels.instance }} could not read the database at its "
            "last scrapes: the other commandbus alerts are blind meanwhile.",
            f"{url}/",
        ),
    ]


#: Recorded by the rules file, for the alerts' links (and for dashboards): how much each
#: error group of the troubleshooting queue grew within ``tsq_window``.
GROWTH = "commandbus:troubleshooting_by_error:growth"


def recording_rules(settings: AlertSettings | None = None) -> list[tuple[str, str]]:
    """``(record, expr)`` of the recording rules the alerts use."""
    s = AlertSettings() if settings is None else settings
    labels = ", ".join((*s.labels, "domain", "command_type", "error_type", "error_code"))
    parked, window = "commandbus_troubleshooting_by_error", s.tsq_window
    # A group that did not exist a window ago grew by all of its commands; one that did,
    # by what it gained since its lowest point in the window.
    return [
        (
            GROWTH,
            f"max by ({labels}) (\n"
            f"  ({parked} unless {parked} offset {window})\n"
            f"  or ({parked} - min_over_time({parked}[{window}]))\n)",
        )
    ]


def _top_error_group(group: tuple[str, ...]) -> str:
    """The console filter of the error group that grew most (a query in the template)."""
    names = (*group, "domain")
    matchers = ", ".join(f"{name}=%q" for name in names)
    query = f"topk(1, {GROWTH}{{{matchers}}} > 0)"
    args = " ".join(f"$labels.{name}" for name in names)
    fields = "&".join(
        f"{param}={{{{ .Labels.{label} | urlquery }}}}"
        for param, label in (
            ("type", "command_type"),
            ("error_type", "error_type"),
            ("error_code", "error_code"),
        )
    )
    return (
        f'{{{{ with printf "{query}" {args} | query }}}}'
        f"{{{{ with first . }}}}&{fields}{{{{ end }}}}{{{{ end }}}}"
    )


def render_rules(settings: AlertSettings | None = None, *, version: str = "") -> str:
    """The rules file (YAML) for ``settings``; its header says how it was made."""
    s = AlertSettings() if settings is None else settings
    flags = " ".join(
        f"--{name.replace('_', '-')} {_shell(value)}" for name, value in s.changed().items()
    )
    lines = [
        f"# commandbus alert rules{f' (commandbus {version})' if version else ''}.",
        f"# Made by: commandbus monitoring rules{' ' + flags if flags else ''}",
        "# Runbooks: docs/operations.md, section Alerts (one section per alert).",
        "groups:",
        "  - name: commandbus",
        "    rules:",
    ]
    for record, expr in recording_rules(s):
        lines.append(f"      - record: {record}")
        lines.append("        expr: |-")
        lines.extend(f"          {line}" for line in expr.splitlines())
    for rule in alert_rules(s):
        lines.append(f"      - alert: {rule.alert}")
        lines.append("        expr: |-")
        lines.extend(f"          {line}" for line in rule.expr.splitlines())
        lines.append(f"        for: {rule.for_}")
        lines.append("        labels:")
        lines.append(f"          severity: {rule.severity}")
        annotations = {
            "summary": rule.summary,
            "description": rule.description,
            "console_url": rule.console,
            "runbook": f"docs/operations.md#{rule.anchor}",
        }
        if s.runbook_url:
            annotations["runbook_url"] = f"{s.runbook_url}#{rule.anchor}"
        lines.append("        annotations:")
        lines.extend(f"          {key}: {json.dumps(value)}" for key, value in annotations.items())
    return "\n".join(lines) + "\n"


def _shell(value: object) -> str:
    text = str(value)
    return text if text and all(c.isalnum() or c in "._-:/,=" for c in text) else f"'{text}'"
