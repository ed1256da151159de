"""The overview's server-rendered chart: per-minute series and an SVG with escaped labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from commandbus_web.charts import minute_series, sparkline_svg
from commandbus_web.formatting import age, count


def test_minute_series_places_points_and_fills_gaps() -> None:
    now = datetime(2026, 1, 1, 12, 30, 42, tzinfo=UTC)
    minute = now.replace(second=0)
    points = [(minute, 5), (minute - timedelta(minutes=2), 3), (minute - timedelta(hours=1), 9)]
    assert minute_series(points, now=now, minutes=4) == [0, 3, 0, 5]


def test_sparkline_escapes_labels_and_scales() -> None:
    svg = sparkline_svg([("<b>done</b>", 'x" onload="y', [0, 5, 10])], title="<script>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "&lt;b&gt;done&lt;/b&gt;: 0, 5, 10" in svg
    assert 'class="x&quot; onload=&quot;y"' in svg
    assert "(max 10/min)" in svg


def test_counts_are_capped_for_display() -> None:
    assert count(9_999) == "9,999"
    assert count(10_001) == "10,000+"
    assert age(42) == "42 s" and age(7200) == "2.0 h"
