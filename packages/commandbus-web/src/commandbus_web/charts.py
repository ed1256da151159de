"""A server-rendered SVG chart of commands finished per minute: no chart library, no script.

Every value written into the SVG is a number the code computed; labels go through
:func:`html.escape`, so the markup is safe to insert with Jinja's ``|safe``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta

__all__ = ["minute_series", "sparkline_svg"]


def minute_series(
    points: Sequence[tuple[datetime, int]], *, now: datetime, minutes: int
) -> list[int]:
    """Values per minute, oldest first, the last being the current minute; missing = 0."""
    current = now.replace(second=0, microsecond=0)
    start = current - timedelta(minutes=minutes - 1)
    values = [0] * minutes
    for minute, value in points:
        index = int((minute - start).total_seconds() // 60)
        if 0 <= index < minutes:
            values[index] += value
    return values


def sparkline_svg(
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    width: int = 320,
    height: int = 60,
    title: str = "",
) -> str:
    """An SVG of one polyline per ``(label, css_class, values)``, on a shared scale."""
    longest = max((len(values) for _, _, values in series), default=0)
    peak = max((max(values, default=0) for _, _, values in series), default=0)
    top = max(peak, 1)
    pad = 4
    step = (width - 2 * pad) / max(longest - 1, 1)
    lines = []
    for label, css_class, values in series:
        coords = " ".join(
            f"{pad + i * step:.1f},{height - pad - (v / top) * (height - 2 * pad):.1f}"
            for i, v in enumerate(values)
        )
        lines.append(
            f'<polyline class="{html.escape(css_class)}" points="{coords}">'
            f"<title>{html.escape(label)}: {', '.join(format(v, ',') for v in values)}</title>"
            "</polyline>"
        )
    label = html.escape(title)
    return (
        f'<svg class="sparkline" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{label}">'
        f"<title>{label} (max {peak:,}/min)</title>"
        f'<line class="axis" x1="{pad}" y1="{height - pad}" x2="{width - pad}" '
        f'y2="{height - pad}"></line>' + "".join(lines) + "</svg>"
    )
