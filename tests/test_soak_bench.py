"""bench/soak.py's own checks, on a short run with a worker killed and PostgreSQL crashed.

The run injects one duplicate ledger row before its end check: the check must report
exactly that one command as completed twice (a real double completion would make it two)
and nothing lost, and the script must exit 1. Everything else it checks is printed as
``ok``/``FAIL`` lines, parsed here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"


def test_soak_catches_a_double_completion_and_loses_nothing_through_kills_and_a_crash(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    command = [sys.executable, str(SOAK), "--minutes", "0.3", "--sample", "1"]
    command += ["--kill-every", "6", "--restart-db-at", "9", "--rate", "20", "--batch", "10"]
    command += ["--inject-fault", "duplicate", "--no-plot", "--out", str(tmp_path)]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=400, check=False
    )
    out = done.stdout + done.stderr
    verdicts = [line for line in done.stdout.splitlines() if line[:5] in ("ok   ", "FAIL ")]
    assert "ok   lost commands (no ledger row): 0" in verdicts, out
    assert "FAIL commands completed twice: 1" in verdicts, out
    assert any(line.startswith("ok   sagas:") for line in verdicts), out
    assert any(line.startswith("ok   permanent failures") for line in verdicts), out
    assert "SIGKILL worker process" in out and "PostgreSQL is back" in out, out
    assert done.returncode == 1, out
    header = (tmp_path / "soak.csv").read_text().splitlines()[0]
    assert header.startswith("t,sent,completed,throughput,p50_ms,p99_ms,queue,schema_mb")
