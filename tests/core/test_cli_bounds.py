"""Every command-line flag has the range of the argument it sets: a value outside it, NaN,
an infinity, a huge number or text that is not UTF-8 ends in one line naming the flag
and exit status 2, without a traceback and without writing anything."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from commandbus.cli import main
from core._tables import rows_written

BIG_AGE = "99999999999d"
SURROGATE = "a\udcffb"  # what Python makes of the byte 0xff in an argument
ID = str(uuid.UUID(int=1))
APP = "nowhere:registry"  # never imported: the flags are refused first

#: (the flag the error must name, the arguments after --dsn/--schema).
CASES: list[tuple[str, list[str]]] = [
    *[
        ("--visibility-timeout", ["worker", APP, "--domain", "d", "--visibility-timeout", v])
        for v in ("1e308", "nan", "inf", "0", "86401", "-1")
    ],
    *[
        ("--stop-timeout", ["worker", APP, "--domain", "d", "--stop-timeout", v])
        for v in ("inf", "nan", "-1", "1e308")
    ],
    *[
        ("--concurrency", ["worker", APP, "--domain", "d", "--concurrency", v])
        for v in ("0", "10001", str(2**31), "1e3")
    ],
    ("--domain", ["worker", APP, "--domain", "d=0"]),
    ("--domain", ["worker", APP, "--domain", f"d={2**31}"]),
    ("--threads", ["worker", APP, "--domain", "d", "--threads", "10001"]),
    ("--processes", ["worker", APP, "--domain", "d", "--processes", "1001"]),
    ("--retention", ["worker", APP, "--domain", "d", "--retention", BIG_AGE]),
    ("--max-attempts", ["worker", APP, "--domain", "d", "--max-attempts", str(2**31)]),
    ("--backoff", ["worker", APP, "--domain", "d", "--backoff", "1,1e308"]),
    ("--backoff", ["worker", APP, "--domain", "d", "--backoff", "nan"]),
    ("--metrics-port", ["worker", APP, "--domain", "d", "--metrics-port", "70000"]),
    ("--older-than", ["prune", "--older-than", BIG_AGE]),
    ("--older-than", ["prune", "--older-than", "0d"]),
    ("--chunk-size", ["prune", "--chunk-size", "100001"]),
    ("--since", ["tsq", "list", "--since", BIG_AGE]),
    ("--until", ["tsq", "list", "--until", BIG_AGE]),
    ("--limit", ["tsq", "list", "--limit", str(2**31)]),
    ("--offset", ["commands", "list", "--offset", str(2**63)]),
    ("--limit", ["commands", "list", "--limit", "10001"]),
    ("--limit", ["tsq", "retry", "--all", "--domain", "d", "--limit", str(2**63)]),
    ("--reason", ["tsq", "retry", "--all", "--domain", "d", "--reason", SURROGATE]),
    ("--operator", ["tsq", "retry", "--all", "--domain", "d", "--operator", SURROGATE]),
    ("--error-code", ["tsq", "retry", "--all", "--error-code", SURROGATE]),
    ("--reason", ["tsq", "cancel", "d", ID, "--reason", "   "]),
    ("--reason", ["pause", "d", "--reason", SURROGATE]),
    ("--reason", ["pause", "d", "--reason", ""]),
    ("--reason", ["pause", "d", "--reason", "x" * 4097]),
    ("--operator", ["pause", "d", "--reason", "why", "--operator", SURROGATE]),
    ("--operator", ["resume", "d", "--operator", SURROGATE]),
    ("--reason", ["commands", "cancel", "d", ID, "--reason", SURROGATE]),
    ("--reason", ["replies", "retry", "1", "--reason", SURROGATE]),
    ("--reason", ["replies", "discard", "1", "--reason", ""]),
    ("ID", ["replies", "retry", str(2**63)]),
    ("--max-pending-age", ["health", "--max-pending-age", "inf"]),
    ("--max-pending-age", ["health", "--max-pending-age", "1e400"]),
    ("--max-troubleshooting", ["health", "--max-troubleshooting", str(2**63)]),
    ("--port", ["web", "--port", "70000"]),
]


def test_every_flag_refuses_what_its_argument_refuses_in_one_line(
    database_url: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    given = ["--dsn", database_url, "--schema", schema]
    assert main([*given, "migrate"]) == 0
    capsys.readouterr()
    failures = []
    for flag, args in CASES:
        status = main([*given, *args])
        out, err = capsys.readouterr()
        lines = err.splitlines()
        shown = " ".join(args)[:80]
        if status != 2 or len(lines) != 1 or out:
            failures.append(f"{shown}: exit {status}, stdout {out!r}, stderr {err[-300:]!r}")
        elif not lines[0].startswith("commandbus: error: ") or flag not in lines[0]:
            failures.append(f"{shown}: {lines[0]}")
    assert failures == []
    assert rows_written(database_url, schema) == {}


def test_bytes_that_are_not_utf8_are_refused_in_one_line(database_url: str, schema: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "USER")}
    command = [sys.executable, "-m", "commandbus", "--dsn", database_url, "--schema", schema]
    reason = subprocess.run(
        [*command, "pause", "d", "--reason", b"a\xffb"], env=env, capture_output=True
    )
    user = subprocess.run([*command, "resume", "d"], env={**env, "USER": "ok"}, capture_output=True)
    bad_user = subprocess.run(
        [*command, "resume", "d"],
        env={k.encode(): v.encode() for k, v in env.items()} | {b"USER": b"night\xffshift"},
        capture_output=True,
    )
    for done, flag in ((reason, b"--reason"), (bad_user, b"--operator")):
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith(b"commandbus: error: argument " + flag)
    assert user.returncode == 1 and b"migrated" in user.stderr  # the schema is not: fine
