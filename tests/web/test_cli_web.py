"""``commandbus web``: serves the console; never prints the DSN's password."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from commandbus import migration_sql
from commandbus.cli import main


def test_missing_extra_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.import_module

    def fake(name: str, *args: Any) -> Any:
        if name == "commandbus_web":
            raise ModuleNotFoundError("No module named 'commandbus_web'", name="commandbus_web")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    assert main(["web", "--dsn", "postgresql://x@localhost/x"]) == 2
    assert 'pip install "commandbus[web]"' in capsys.readouterr().err


def test_hash_password_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from commandbus_web import BasicAuth

    monkeypatch.setattr(sys, "stdin", io.StringIO("long-enough-pa55word\n"))
    assert main(["web", "--hash-password"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("pbkdf2_sha256$") and "pa55word" not in hashed
    BasicAuth("ops", hashed)  # accepted as a hash


def test_hash_password_refuses_a_short_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("pa55word\n"))
    assert main(["web", "--hash-password"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serves_the_console_without_showing_the_password(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(migration_sql(schema).encode())
        password = "TopSecretPw-123"
        role = f"console_{schema}"
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {role}')
    info = conninfo_to_dict(database_url)
    info.update(user=role, password=password)
    dsn = make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
    port = _free_port()
    env = {**os.environ, "COMMANDBUS_WEB_USER": "", "COMMANDBUS_WEB_USERNAME": "ops"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "commandbus",
            "web",
            "--dsn",
            dsn,
            "--schema",
            schema,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    body = r.read().decode()
                    break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)  # polling the port with a deadline, not synchronising
        assert "Overview" in body, body
        assert password not in body
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=15)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {role}')
            conn.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM {role}')
            conn.execute(f"DROP ROLE {role}")
    assert f"commandbus console on http://127.0.0.1:{port}/" in output
    assert "mode: read-only, no sign-in" in output
    # A misspelt variable is not ignored in silence.
    assert "COMMANDBUS_WEB_USERNAME is not one the console reads" in output
    assert "did you mean COMMANDBUS_WEB_USER?" in output
    assert password not in output


def test_incomplete_auth_settings_are_one_line_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMMANDBUS_WEB_USER", "ops")
    monkeypatch.delenv("COMMANDBUS_WEB_PASSWORD", raising=False)
    monkeypatch.delenv("COMMANDBUS_WEB_PASSWORD_HASH", raising=False)
    assert main(["web", "--dsn", "postgresql://x@localhost/x"]) == 2
    assert "COMMANDBUS_WEB_PASSWORD_HASH" in capsys.readouterr().err
    monkeypatch.setenv("COMMANDBUS_WEB_PASSWORD", "short")
    assert main(["web", "--dsn", "postgresql://x@localhost/x"]) == 2
    assert "COMMANDBUS_WEB_PASSWORD: the password must have at least 12" in capsys.readouterr().err
    monkeypatch.delenv("COMMANDBUS_WEB_USER")
    # A trusted header without the proxy's address would let any client name itself.
    assert main(["web", "--dsn", "postgresql://x@localhost/x", "--auth-header", "X-User"]) == 2
    assert "needs the proxy's address" in capsys.readouterr().err
    assert main(["web", "--dsn", "postgresql://x@localhost/x", "--operator", "ann"]) == 2
    assert "go with --auth-header" in capsys.readouterr().err
    assert main(["web", "--dsn", "postgresql://x@localhost/x", "--anonymous-read"]) == 2
    assert "--anonymous-read goes with a sign-in" in capsys.readouterr().err
    bad_proxy = ["--auth-header", "X-User", "--trusted-proxy", "proxy.local"]
    assert main(["web", "--dsn", "postgresql://x@localhost/x", *bad_proxy]) == 2
    assert "not an IP address or network" in capsys.readouterr().err
