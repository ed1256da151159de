"""``commandbus monitoring rules [--THRESHOLD VALUE ...]`` and ``monitoring dashboard``.

``rules`` prints the Prometheus alert rules for the metrics of ``--metrics-port``, with
the thresholds given as flags (every flag has a default; the file's header repeats the
flags it was made with). ``dashboard`` prints the Grafana dashboard. Both write to
stdout, or to ``--output FILE``. Runbooks: docs/operations.md, "Alerts".
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from commandbus._errors import ValidationError
from commandbus._registry import package_version
from commandbus.cli._args import Parser, UsageError, positive_int
from commandbus.monitoring import AlertSettings, dashboard, render_rules
from commandbus.monitoring._settings import DURATIONS

__all__ = ["add_parser"]


def add_parser(commands: Any, common: Parser) -> None:
    group = commands.add_parser(
        "monitoring",
        help="print the Prometheus alert rules or the Grafana dashboard",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    rules = actions.add_parser(
        "rules",
        help="the alert rules (YAML), with your thresholds",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for spec in dataclasses.fields(AlertSettings):
        rules.add_argument(
            f"--{spec.name.replace('_', '-')}",
            dest=spec.name,
            type=_TYPES.get(spec.name, str),
            default=spec.default,
            metavar=_metavar(spec.name),
            help=spec.metadata["help"],
        )
    _add_output(rules)
    rules.set_defaults(run=_rules)
    board = actions.add_parser("dashboard", help="the Grafana dashboard (JSON)")
    _add_output(board)
    board.set_defaults(run=_dashboard)


def _ratio(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number between 0 and 1, got {text!r}"
        ) from None


_TYPES = {"tsq_growth": positive_int, "failure_min_count": positive_int, "failure_ratio": _ratio}


def _metavar(name: str) -> str:
    if name in DURATIONS:
        return "DURATION"
    return {
        "tsq_growth": "N",
        "failure_min_count": "N",
        "failure_ratio": "RATIO",
        "group_by": "LABELS",
    }.get(name, "URL" if name.endswith("_url") else name.split("_")[-1].upper())


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", type=Path, default=None, metavar="FILE", help="write to FILE"
    )


def _rules(args: argparse.Namespace) -> int:
    values = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(AlertSettings)}
    try:
        settings = AlertSettings(**values)
    except ValidationError as exc:  # named as the flag the user typed
        raise UsageError(f"--{exc.field.replace('_', '-')}: {exc.message}") from None
    return _write(args, render_rules(settings, version=package_version()))


def _dashboard(args: argparse.Namespace) -> int:
    return _write(args, dashboard())


def _write(args: argparse.Namespace, text: str) -> int:
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0
