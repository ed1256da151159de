"""``commandbus worker --processes N`` with several ``--domain NAME=CONCURRENCY``, run as
real processes: the children serve their domains, a SIGKILLed child is started again,
SIGTERM stops all gracefully (exit 0) and a second SIGTERM stops them at once (exit 130).

The children are found through the worker registry (one row per running worker, with
its pid), which every child fills in once it listens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from commandbus import CommandBus, CommandStatus
from core.helpers import wait_for_status

pytestmark = pytest.mark.slow

HANDLERS = """
import asyncio, os
from commandbus import HandlerRegistry

registry = HandlerRegistry()

@registry.handler("orders", "Where")
async def where(command, ctx):
    return {"pid": os.getpid()}

@registry.handler("emails", "Where")
async def where_email(command, ctx):
    return {"pid": os.getpid()}

@registry.handler("orders", "Hang")
async def hang(command, ctx):
    with open(command.data["started"], "a") as f:
        f.write(str(command.command_id) + "\\n")
    await asyncio.Event().wait()
"""


def _registry_rows(database_url: str, schema: str) -> list[tuple[int, str, int]]:
    """(pid, domain, concurrency) of the registered workers whose process is alive."""
    query = sql.SQL("SELECT pid, domain, concurrency FROM {} WHERE kind = 'worker'").format(
        sql.Identifier(schema, "workers")
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(query).fetchall()
    return sorted((pid, domain, n) for pid, domain, n in rows if _alive(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _poll(probe, *, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)  # polling with a deadline


@contextmanager
def supervisor(
    database_url: str, schema: str, tmp_path: Path, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    (tmp_path / "sup_handlers.py").write_text(textwrap.dedent(HANDLERS))
    command = [sys.executable, "-m", "commandbus", "--dsn", database_url, "--schema", schema]
    command += ["worker", "sup_handlers:registry", *args]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    log = (tmp_path / "supervisor.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        # Children get SIGTERM when the supervisor dies (Linux); make sure of it.
        for pid, _, _ in _registry_rows(database_url, schema):
            with_suppressed_kill(pid)


def with_suppressed_kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _log(tmp_path: Path) -> str:
    return (tmp_path / "supervisor.log").read_text(errors="replace")


def _wait_exit(process: subprocess.Popen[bytes], tmp_path: Path, timeout: float) -> int:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"supervisor still running after {timeout}s:\n{_log(tmp_path)}"
        ) from None


async def test_n_processes_per_domain_serve_their_domains_and_sigterm_stops_all(
    database_url: str, schema: str, bus: CommandBus, tmp_path: Path
) -> None:
    with supervisor(
        database_url,
        schema,
        tmp_path,
        *("--domain", "orders=3", "--domain", "emails=2", "--processes", "2"),
    ) as process:
        rows = _poll(
            lambda: len(r := _registry_rows(database_url, schema)) == 4 and r,
            timeout=30,
            what="four registered worker processes",
        )
        assert sorted((domain, n) for _, domain, n in rows) == [
            ("emails", 2),
            ("emails", 2),
            ("orders", 3),
            ("orders", 3),
        ]
        assert len({pid for pid, _, _ in rows}) == 4
        ids = {domain: [uuid.uuid4() for _ in range(8)] for domain in ("orders", "emails")}
        for domain, commands in ids.items():
            for command_id in commands:
                await bus.send(domain, "Where", command_id, {})
        for domain, commands in ids.items():
            for command_id in commands:
                done = await wait_for_status(
                    bus, domain, command_id, CommandStatus.COMPLETED, timeout=20
                )
                assert (done.result or {})["pid"] in {p for p, d, _ in rows if d == domain}

        process.send_signal(signal.SIGTERM)
        assert _wait_exit(process, tmp_path, 30) == 0, _log(tmp_path)
    assert _registry_rows(database_url, schema) == []  # every child stopped cleanly
    assert "stopping 4 worker processes gracefully" in _log(tmp_path)


async def test_a_killed_worker_process_is_started_again(
    database_url: str, schema: str, bus: CommandBus, tmp_path: Path
) -> None:
    with supervisor(
        database_url, schema, tmp_path, "--domain", "orders", "--processes", "2"
    ) as process:
        rows = _poll(
            lambda: len(r := _registry_rows(database_url, schema)) == 2 and r,
            timeout=30,
            what="two registered worker processes",
        )
        victim = rows[0][0]
        os.kill(victim, signal.SIGKILL)
        after = _poll(
            lambda: (
                len(r := _registry_rows(database_url, schema)) == 2
                and victim not in {pid for pid, _, _ in r}
                and r
            ),
            timeout=30,
            what="a new worker process in place of the killed one",
        )
        assert rows[1][0] in {pid for pid, _, _ in after}  # the other one was left alone
        command_id = uuid.uuid4()
        await bus.send("orders", "Where", command_id, {})
        await wait_for_status(bus, "orders", command_id, CommandStatus.COMPLETED, timeout=20)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert _wait_exit(process, tmp_path, 30) == 0, _log(tmp_path)
    assert "was killed by SIGKILL" in _log(tmp_path)


async def test_a_second_sigterm_stops_the_children_at_once(
    database_url: str, schema: str, bus: CommandBus, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    started.touch()
    with supervisor(
        database_url,
        schema,
        tmp_path,
        *("--domain", "orders=2", "--processes", "2", "--stop-timeout", "120"),
    ) as process:
        _poll(
            lambda: len(_registry_rows(database_url, schema)) == 2,
            timeout=30,
            what="two registered worker processes",
        )
        ids = [uuid.uuid4() for _ in range(2)]
        for command_id in ids:
            await bus.send("orders", "Hang", command_id, {"started": str(started)})
        _poll(
            lambda: len(started.read_text().split()) >= 2,
            timeout=20,
            what="two hanging handlers",
        )
        process.send_signal(signal.SIGTERM)
        _poll(
            lambda: "gracefully" in _log(tmp_path),
            timeout=10,
            what="the supervisor to pass the first SIGTERM on",
        )
        assert process.poll() is None  # in-flight handlers hold the graceful stop
        process.send_signal(signal.SIGTERM)
        assert _wait_exit(process, tmp_path, 20) == 130, _log(tmp_path)
    assert _registry_rows(database_url, schema) == []
