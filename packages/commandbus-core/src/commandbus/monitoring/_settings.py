"""The parameters of the alert rules: thresholds, ``for:`` windows, the console's address.

Every field has a default that suits a typical deployment; each is one flag of
``commandbus monitoring rules`` (``tsq_growth`` is ``--tsq-growth``), and the help text of
the flag is the field's ``help`` metadata. Durations are Prometheus durations (``90s``,
``15m``, ``1h30m``, ``7d``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from commandbus._errors import ValidationError

__all__ = ["DURATIONS", "OUTCOMES", "AlertSettings", "duration_seconds"]

#: Outcome labels of ``commandbus_commands_handled_total`` that may count as failures.
OUTCOMES = ("failed", "retried", "parked", "canceled")
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Ten years: Prometheus refuses durations past about 292 years, people far sooner.
_LONGEST = 10 * 365 * 86400
#: The fields that are durations; those ending in ``_for`` may be ``0s``.
DURATIONS = (
    *("tsq_window", "tsq_for", "no_worker_for", "waiting_age", "waiting_for"),
    *("failure_window", "failure_for", "heartbeat_for", "paused_age", "paused_for"),
    *("retention", "pruner_lag", "pruner_for", "database_down_for"),
)


def duration_seconds(field_name: str, text: object, *, zero: bool = False) -> float:
    """Seconds of a Prometheus duration (``1h30m``); ``zero``: ``0s`` is allowed."""
    if isinstance(text, str):
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            seconds = sum(int(n) * _UNITS[u] for n, u in parts)
            if (seconds > 0 or zero) and seconds <= _LONGEST:
                return float(seconds)
    wanted = "a Prometheus duration such as 90s, 15m, 1h30m or 7d, at most 10y"
    raise ValidationError(
        field_name, f"must be {wanted}{'' if not zero else ' (or 0s)'}, got {text!r}"
    )


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """What the shipped alert rules compare with; see docs/operations.md, "Alerts"."""

    console_url: str = field(
        default="http://localhost:8080",
        metadata={"help": "the operator console's address, for the links in annotations"},
    )
    runbook_url: str = field(
        default="",
        metadata={
            "help": "where your copy of docs/operations.md is published: each alert's "
            "runbook_url is this plus #its-section (none when empty)"
        },
    )
    group_by: str = field(
        default="job",
        metadata={
            "help": "labels (comma-separated) that tell deployments apart, kept by every "
            "aggregation with the domain (empty: one deployment)"
        },
    )
    tsq_growth: int = field(
        default=10, metadata={"help": "commands added to a domain's troubleshooting queue ..."}
    )
    tsq_window: str = field(default="15m", metadata={"help": "... within this window"})
    tsq_for: str = field(default="1m", metadata={"help": "... for this long"})
    no_worker_for: str = field(
        default="5m",
        metadata={"help": "ready commands and no live worker in a domain for this long"},
    )
    waiting_age: str = field(
        default="10m",
        metadata={"help": "the oldest ready command of a running domain waited longer ..."},
    )
    waiting_for: str = field(default="5m", metadata={"help": "... for this long"})
    failure_ratio: float = field(
        default=0.1,
        metadata={"help": "share of a command type's handler attempts that failed (0-1) ..."},
    )
    failure_window: str = field(default="10m", metadata={"help": "... over this window"})
    failure_min_count: int = field(
        default=5, metadata={"help": "... when at least this many failed in the window"}
    )
    failure_outcomes: str = field(
        default="retried,parked",
        metadata={
            "help": "outcomes that count as failed (of failed, retried, parked, canceled; "
            "'failed' is a business rule's refusal)"
        },
    )
    failure_for: str = field(default="5m", metadata={"help": "... for this long"})
    heartbeat_for: str = field(
        default="2m", metadata={"help": "a registered worker or router stale for this long"}
    )
    paused_age: str = field(
        default="30m",
        metadata={"help": "the oldest ready command of a paused domain waited longer ..."},
    )
    paused_for: str = field(default="1m", metadata={"help": "... for this long"})
    retention: str = field(
        default="7d", metadata={"help": "the workers' --retention (Retention.older_than)"}
    )
    pruner_lag: str = field(
        default="1h",
        metadata={"help": "finished commands older than retention plus this remain ..."},
    )
    pruner_for: str = field(default="30m", metadata={"help": "... for this long"})
    database_down_for: str = field(
        default="2m", metadata={"help": "an exporter could not read the database for this long"}
    )

    def __post_init__(self) -> None:
        url = urlsplit(self.console_url) if isinstance(self.console_url, str) else None
        if url is None or url.scheme not in ("http", "https") or not url.netloc:
            raise ValidationError(
                "console_url", f"must be an http(s) URL, got {self.console_url!r}"
            )
        for name in ("console_url", "runbook_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or any(c in value for c in '{}"\n\\') or " " in value:
                raise ValidationError(
                    name, f"must be a URL without spaces, quotes or braces, got {value!r}"
                )
        object.__setattr__(self, "console_url", self.console_url.rstrip("/"))
        for name in ("group_by", "failure_outcomes", *DURATIONS):
            if not isinstance(getattr(self, name), str):
                raise ValidationError(name, f"must be a string, got {getattr(self, name)!r}")
        for label in self.labels:
            if label == "domain":
                raise ValidationError("group_by", "'domain' is kept anyway: name other labels")
            if not _LABEL.fullmatch(label):
                raise ValidationError("group_by", f"{label!r} is not a label name")
        for name in DURATIONS:
            duration_seconds(name, getattr(self, name), zero=name.endswith("_for"))
        for name in ("tsq_growth", "failure_min_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(name, f"must be a whole number of at least 1, got {value!r}")
        ratio = self.failure_ratio
        if (
            isinstance(ratio, bool)
            or not isinstance(ratio, int | float)
            or not (math.isfinite(ratio) and 0 < ratio < 1)
        ):
            raise ValidationError("failure_ratio", f"must be between 0 and 1, got {ratio!r}")
        outcomes = self.outcomes
        if not outcomes or any(o not in OUTCOMES for o in outcomes):
            raise ValidationError(
                "failure_outcomes",
                f"must name some of {', '.join(OUTCOMES)}, got {self.failure_outcomes!r}",
            )

    @property
    def labels(self) -> tuple[str, ...]:
        """The ``group_by`` labels, in order."""
        return tuple(part.strip() for part in self.group_by.split(",") if part.strip())

    @property
    def outcomes(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.failure_outcomes.split(",") if part.strip())

    def seconds(self, name: str) -> float:
        """A duration field, in seconds."""
        return duration_seconds(name, getattr(self, name), zero=True)

    def changed(self) -> dict[str, object]:
        """The fields that differ from their defaults (what a regeneration must repeat)."""
        return {
            spec.name: getattr(self, spec.name)
            for spec in dataclasses.fields(self)
            if getattr(self, spec.name) != spec.default
        }
