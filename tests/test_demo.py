"""The README's first command, ``hatch run demo``, works end to end (small N)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from commandbus.testing import find_server_binaries

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


def test_without_a_database_it_starts_a_throwaway_one_and_can_keep_it() -> None:
    """The newcomer's path: no DATABASE_URL, no --dsn. With --keep the server outlives the
    demo and its URL is printed; the test then stops it."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    out = subprocess.run(
        [sys.executable, str(DEMO), "--commands", "100", "--keep"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    url = next(
        (
            line.split(" at ", 1)[1].split(" ")[0]
            for line in out.stdout.splitlines()
            if line.startswith("The database keeps running at ")
        ),
        None,
    )
    data_dir = next(
        (
            line.rsplit(": ", 1)[1]
            for line in out.stdout.splitlines()
            if line.startswith("Its data directory")
        ),
        None,
    )
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Starting a throwaway PostgreSQL" in out.stdout
        assert "== Summary" in out.stdout
        assert url is not None and data_dir is not None
        with psycopg.connect(url) as conn:  # still running, with the demo's data
            row = conn.execute("SELECT count(*) FROM demo.commands").fetchone()
        assert row is not None and row[0] > 100
    finally:
        if data_dir is not None:
            stop_server(data_dir)


def stop_server(data_dir: str) -> None:
    pg_ctl = os.path.join(find_server_binaries() or "", "pg_ctl")
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    subprocess.run(
        [pg_ctl, "-D", data_dir, "-m", "immediate", "-w", "stop"],
        capture_output=True,
        timeout=60,
        **run_as,
    )
    shutil.rmtree(os.path.dirname(data_dir), ignore_errors=True)
