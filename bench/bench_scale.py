"""Scaling with worker processes: 1, 2 and 4 ``commandbus worker`` processes, one server.

    python bench/bench_scale.py [--commands 20000] [--processes 1,2,4] [--concurrency 20]

For each count N: start ``commandbus worker --processes N`` (the supervisor) on an empty
queue and wait until every process has registered; then make ``--commands`` no-op
commands visible at once (sent in one transaction) and time until the queue is empty.

Printed per N: commands/s; server CPU per command (utime + stime of the postmaster and
all its children, live ones from /proc/<pid>/stat and exited ones from the postmaster's
cutime + cstime: backends, WAL writer, checkpointer, autovacuum); WAL bytes per command
(pg_current_wal_lsn before and after); client CPU per command
(the worker processes' utime + stime, from /proc). Both CPU deltas are taken from the
commit of the sends to the empty queue, so the workers' start-up is not counted.

A throwaway server with durable settings (fsync on, synchronous_commit on) is started;
DATABASE_URL is not used (the server's processes must be this machine's). Figures drift
run to run on a shared machine: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, SendRequest, migrate
from commandbus.testing import postgres_server

DOMAIN = "scale"
HANDLERS = """
from commandbus import HandlerRegistry

registry = HandlerRegistry()

@registry.handler("scale", "Noop")
async def noop(command, ctx):
    return None
"""
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    processes: int
    seconds: float
    server_cpu: float
    client_cpu: float
    commands: int
    wal_bytes: int

    @property
    def rate(self) -> float:
        return self.commands / self.seconds


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _cpu(pid: int, *, reaped: bool = False) -> float:
    """utime + stime in seconds (plus the reaped children's, with ``reaped``)."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    # After the ")": state is field 3 of the man page, so utime (14) is index 11 here.
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def server_cpu(postmaster: int) -> float:
    return _cpu(postmaster, reaped=True) + sum(_cpu(pid) for pid in _children(postmaster))


def _start_workers(
    url: str, schema: str, processes: int, concurrency: int, app_dir: str
) -> tuple[subprocess.Popen[bytes], Any]:
    path = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([app_dir, path])}
    command = [sys.executable, "-m", "commandbus", "--dsn", url, "--schema", schema]
    command += ["worker", "scale_app:registry", "--domain", f"{DOMAIN}={concurrency}"]
    command += ["--processes", str(processes)]
    log = open(os.path.join(app_dir, f"workers-{processes}.log"), "wb")  # noqa: SIM115
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log


async def one_count(
    url: str, postmaster: int, processes: int, args: argparse.Namespace, app_dir: str
) -> Result:
    schema = f"scale_{uuid.uuid4().hex[:8]}"
    async with AsyncConnectionPool(url, min_size=1, max_size=4, open=False) as pool:
        await migrate(pool, schema=schema)
        supervisor, log = _start_workers(url, schema, processes, args.concurrency, app_dir)
        try:
            async with pool.connection() as conn:
                deadline = time.monotonic() + 120
                while True:
                    row = await (
                        await conn.execute(f"SELECT count(*) FROM {schema}.workers")
                    ).fetchone()
                    await conn.commit()
                    if row and row[0] >= processes:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{processes} workers did not start; see {log.name}")
                    await asyncio.sleep(0.2)  # polling start-up, with a deadline
            workers = _children(supervisor.pid)
            bus = CommandBus(pool, schema=schema)
            async with pool.connection() as conn:
                async with conn.transaction():
                    for start in range(0, args.commands, 1000):
                        n = min(1000, args.commands - start)
                        requests = [SendRequest(DOMAIN, "Noop", uuid.uuid4(), {}) for _ in range(n)]
                        await bus.send_batch(requests, conn=conn)
                wal0 = await _wal_lsn(conn)
                t0 = time.monotonic()
                server0 = server_cpu(postmaster)
                client0 = sum(_cpu(pid) for pid in workers)
                while True:
                    row = await (
                        await conn.execute(
                            f"SELECT count(*) FROM {schema}.commands WHERE status <> 'COMPLETED'"
                        )
                    ).fetchone()
                    await conn.commit()
                    if row is not None and row[0] == 0:
                        break
                    await asyncio.sleep(0.1)  # polling the drain
                seconds = time.monotonic() - t0
                server1 = server_cpu(postmaster)
                client1 = sum(_cpu(pid) for pid in workers)
                wal = await _wal_bytes_since(conn, wal0)
        finally:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(60)
            log.close()
        async with pool.connection() as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return Result(processes, seconds, server1 - server0, client1 - client0, args.commands, wal)


async def _wal_lsn(conn: psycopg.AsyncConnection[Any]) -> str:
    row = await (await conn.execute("SELECT pg_current_wal_lsn()::text")).fetchone()
    await conn.commit()
    assert row is not None
    return str(row[0])


async def _wal_bytes_since(conn: psycopg.AsyncConnection[Any], start: str) -> int:
    cur = await conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [start])
    row = await cur.fetchone()
    await conn.commit()
    assert row is not None
    return int(row[0])


async def bench(url: str, postmaster: int, args: argparse.Namespace, app_dir: str) -> list[Result]:
    results = []
    for processes in args.processes:
        result = await one_count(url, postmaster, processes, args, app_dir)
        results.append(result)
        print(
            f"{processes} processes: {result.rate:8.0f} commands/s   server CPU "
            f"{1e6 * result.server_cpu / result.commands:6.0f} us/command   client CPU "
            f"{1e6 * result.client_cpu / result.commands:6.0f} us/command   WAL "
            f"{result.wal_bytes / result.commands:5.0f} B/command",
            flush=True,
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument(
        "--processes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4]
    )
    parser.add_argument("--concurrency", type=int, default=20, help="per process")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {args.commands} no-op commands per run", flush=True)
    os.environ.pop("DATABASE_URL", None)
    with postgres_server(fast=False, use_env=False) as server:
        assert server.data_dir is not None
        with open(os.path.join(server.data_dir, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        with psycopg.connect(server.url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        print(f"PostgreSQL {version[0] if version else '?'}, durable settings", flush=True)
        with tempfile.TemporaryDirectory() as app_dir:
            Path(app_dir, "scale_app.py").write_text(textwrap.dedent(HANDLERS))
            results = asyncio.run(bench(server.url, postmaster, args, app_dir))
    base = results[0]
    print("\nratios to the first count:")
    for r in results:
        server = (r.server_cpu / r.commands) / (base.server_cpu / base.commands)
        client = (r.client_cpu / r.commands) / (base.client_cpu / base.commands)
        print(
            f"  {r.processes} processes: throughput x{r.rate / base.rate:.2f}, "
            f"server CPU per command x{server:.2f}, client CPU per command x{client:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
