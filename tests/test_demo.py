"""The README's first command, ``hatch run demo``, works end to end (small N)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "demo" / "main.py"


def test_the_demo_runs_its_whole_scenario_and_exits_zero(database_url: str) -> None:
    out = subprocess.run(
        [sys.executable, str(DEMO), "--commands", "300", "--dsn", database_url],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "is now COMPLETED" in text  # the operator's retry went through
    assert "CANCELED" in text
    assert "batch 'receipts': COMPLETED, 200/200 completed" in text
    assert "COMPLETED, steps ['RESERVE:SUCCESS', 'PAY:SUCCESS', 'SHIP:SUCCESS']" in text
    assert "== Summary" in text
    summary = text.split("== Summary", 1)[1]
    assert "status COMPLETED" in summary
    assert "Data is in schema 'demo_" in text
