"""What commands print: aligned tables and key/value blocks for people, JSON for scripts."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

__all__ = ["emit", "fields", "table", "to_json"]

#: Longest cell of a table; longer text is cut (``show`` and ``--json`` print it whole).
MAX_CELL = 60


def emit(args: argparse.Namespace, data: object, human: Callable[[], str]) -> None:
    """Print ``data`` as JSON with ``--json``, else the text ``human()`` builds."""
    print(to_json(data) if args.json else human())


def to_json(data: object) -> str:
    """JSON of dataclasses, lists and dicts; UUIDs, datetimes and Decimals as strings."""
    return json.dumps(data, default=_json_default, indent=2, ensure_ascii=False)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    empty: str,
    whole_last: bool = False,
) -> str:
    """An aligned text table, or ``empty`` when there are no rows. Cells are cut at
    :data:`MAX_CELL` characters, except the last column's with ``whole_last`` (nothing
    follows it to push out of line)."""
    if not rows:
        return empty
    cells = [
        [
            text if whole_last and i == len(row) - 1 else _cut(text)
            for i, text in enumerate(_text(value) for value in row)
        ]
        for row in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """``label  value`` lines, labels aligned; values are not cut."""
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{label.ljust(width)}  {_text(value)}" for label, value in pairs)


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)
    return " ".join(str(value).split())


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _json_default(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
