"""Jinja filters: capped counts, ages, times and pretty JSON (escaped by autoescape)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from commandbus.console import COUNT_CAP

__all__ = ["install"]


def count(value: int | None, cap: int = COUNT_CAP) -> str:
    """``12,345``, or ``10,000+`` above the cap (counts are never unbounded)."""
    if value is None:
        return "-"
    if value > cap:
        return f"{cap:,}+"
    return f"{value:,}"


def num(value: int | float | None) -> str:
    """``12,345``: every number on a page has its thousands separated the same way."""
    if value is None:
        return "-"
    return f"{value:,}"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty(value: Any) -> str:
    if value is None:
        return "null"
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def install(env: Environment) -> None:
    env.filters["count"] = count
    env.filters["num"] = num
    env.filters["age"] = age
    env.filters["when"] = when
    env.filters["pretty"] = pretty
