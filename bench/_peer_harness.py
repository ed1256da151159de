"""One measurement of one library in a child process of ``bench/peers.py``.

Each ``bench/peer_<library>.py`` defines a :class:`Peer` and calls :func:`main`, which
creates a fresh database on the server at ``--url``, installs the library's schema in it,
measures one shape of work and prints one JSON line. Python 3.11+, psycopg 3 only: this
module is imported by the commandbus, PgQueuer and procrastinate children (Python 3.11,
``peers`` environment) and by the oban child (Python 3.12, ``peers-oban``).

The ``send_process`` shape runs in two processes, as an application and its worker do:
this child runs the worker and starts the sending half, the same script with the hidden
shape ``sender``, which opens its client, says ``ready`` on stdout and runs the
library's ``send`` loop when told ``go`` on stdin (see :class:`Sender`). Its client CPU is
added to the worker's.

CPU is read around the measured region only: the client's ``time.process_time()`` and the
server's, the sum of utime and stime of the postmaster and all its children from
``/proc/<pid>/stat`` (plus the postmaster's cutime and cstime, which collect the CPU of
children that exited in between). The server must run on this machine for the server
figure; otherwise it is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

#: The payload of every job and command, the one bench_send uses.
DATA: dict[str, Any] = {"order_id": 1234, "amount": "99.90", "currency": "EUR", "note": "benchmark"}
BATCH = 1_000
SHAPES = ("send", "batch", "process", "process_plain", "latency", "send_process")
#: The sending half of ``send_process``, run by :class:`Sender` (not by peers.py).
SENDER = "sender"
LATENCY_WARMUP = 20
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


class ServerCpu:
    """CPU seconds of every process of the server, if it runs on this machine."""

    def __init__(self, url: str) -> None:
        self.postmaster: int | None = None
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            fields = _stat(row[0]) if row else None  # while the backend lives
        if fields is None:
            return
        parent = int(fields[1])
        try:
            with open(f"/proc/{parent}/comm") as f:
                comm = f.read().strip()
        except OSError:
            return
        if comm in ("postgres", "postmaster"):
            self.postmaster = parent

    def seconds(self) -> float | None:
        if self.postmaster is None:
            return None
        ticks = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            fields = _stat(entry.name)
            if fields is None:
                continue
            # fields[1] is ppid; [11], [12] utime, stime; [13], [14] cutime, cstime
            if int(entry.name) == self.postmaster:
                ticks += sum(int(x) for x in fields[11:15])
            elif int(fields[1]) == self.postmaster:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / _TICK


@dataclass
class Meter:
    """Wall time, client CPU and server CPU of one measured region."""

    #: None in the sender of ``send_process``: the worker's process measures the server.
    server: ServerCpu | None
    count: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float | None = None
    #: Set in the sender of ``send_process``: waits for the worker's ``go``.
    gate: Callable[[], Awaitable[None]] | None = None

    async def wait_for_go(self) -> None:
        """Hold a send loop, its client open, until the worker of ``send_process`` is
        ready; returns at once in every other shape."""
        if self.gate is not None:
            await self.gate()

    def _server_seconds(self) -> float | None:
        return None if self.server is None else self.server.seconds()

    @contextmanager
    def measure(self, count: int) -> Iterator[None]:
        server_before = self._server_seconds()
        cpu_before = time.process_time()
        start = time.perf_counter()
        yield
        self.wall = time.perf_counter() - start
        self.client_cpu = time.process_time() - cpu_before
        server_after = self._server_seconds()
        self.count = count
        if server_before is not None and server_after is not None:
            self.server_cpu = server_after - server_before


class Peer(Protocol):
    """One library, bound to a fresh database (``url``) by :func:`main`."""

    #: The schema holding the library's tables, for bytes per job.
    schema: str
    #: The distribution name, for its version.
    package: str

    async def install(self) -> None: ...

    async def send(self, n: int, meter: Meter) -> None:
        """Enqueue ``n`` jobs one at a time, each in its own transaction; the client
        open, ``await meter.wait_for_go()`` just before the measured loop."""

    async def batch(self, n: int, meter: Meter) -> None:
        """Enqueue ``n`` jobs in batches of ``BATCH``, one transaction each."""

    async def process(self, n: int, concurrency: int, plain: bool, meter: Meter) -> None:
        """Enqueue ``n`` no-op jobs (unmeasured), then process them all (measured)."""

    async def latency(self, samples: int, meter: Meter) -> list[float]:
        """Enqueue-to-handler-start latencies (ms) on an idle worker woken by NOTIFY."""

    async def send_process(
        self, n: int, concurrency: int, go: Callable[[], Awaitable[None]], meter: Meter
    ) -> None:
        """Start a worker (``async def`` no-op handler for the jobs ``send`` enqueues)
        and let it go idle, then, measured: ``await go()`` (another process starts
        ``send`` of ``n`` jobs) and wait until the worker has completed all ``n``."""

    def settings(self, shape: str, concurrency: int) -> str:
        """The library's settings for this shape, printed next to the table."""


async def enqueue_setup(url: str, n: int, enqueue: Callable[[int], Awaitable[object]]) -> None:
    """Enqueue ``n`` jobs in batches of ``BATCH``, then ANALYZE: the unmeasured set-up of
    a full queue. Without fresh statistics the planner may take a table that was empty a
    moment ago for tiny and scan it on every fetch (procrastinate did: 10x slower)."""
    for start in range(0, n, BATCH):
        await enqueue(min(BATCH, n - start))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("ANALYZE")


async def idle_latency(
    samples: int,
    send: Callable[[], Awaitable[object]],
    arrived: asyncio.Event,
    stamps: list[float],
    meter: Meter,
) -> list[float]:
    """Send one job, wait for its handler to start, let the worker go idle; repeat.

    The first ``LATENCY_WARMUP`` samples (connections, prepared statements) are dropped.
    """

    async def one() -> float:
        arrived.clear()
        sent = time.perf_counter()
        await send()
        await asyncio.wait_for(arrived.wait(), 5)
        await asyncio.sleep(0.01)  # idle again: we measure the wake-up of an idle worker
        return (stamps[-1] - sent) * 1000

    for _ in range(LATENCY_WARMUP):
        await one()
    with meter.measure(samples):
        return [await one() for _ in range(samples)]


async def wait_for_count(count: Callable[[], int], n: int) -> None:
    """Poll an in-process counter: observing must cost the database nothing."""
    while count() < n:  # noqa: ASYNC110 - a counter, not an event
        await asyncio.sleep(0.005)


async def wait_for_rows(url: str, query: str, n: int) -> None:
    """Poll the database until ``query`` counts ``n`` (for the tail of a run only)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(query)
            row = await cur.fetchone()
            if row and row[0] >= n:
                return
            await asyncio.sleep(0.005)


class Sender:
    """The sending half of ``send_process``: this script again, in its own process.

    :meth:`started` returns once the sender's client is open (it prints ``ready``);
    :meth:`go` starts its send loop. A sender that fails cancels the task that started
    it, so a worker never waits for jobs that will not come.
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.failed: int | None = None
        #: From the sender's own meter, once it has exited: its send loop only.
        self.client_cpu = 0.0
        self.wall = 0.0

    @classmethod
    @asynccontextmanager
    async def started(cls, url: str, n: int) -> AsyncIterator[Sender]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            sys.argv[0],  # this peer script (run from the same directory)
            SENDER,
            "--url",
            url,
            "-n",
            str(n),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        sender = cls(process)
        try:
            line = await asyncio.wait_for(process.stdout.readline(), 120)
            if line != b"ready\n":
                raise RuntimeError(f"the sender did not start: {line!r}")
            watcher = asyncio.create_task(sender._watch(asyncio.current_task()))
            try:
                yield sender
            except asyncio.CancelledError:
                if sender.failed is not None:
                    raise RuntimeError(f"the sender exited with {sender.failed}") from None
                raise
            finally:
                watcher.cancel()
            if code := await process.wait():
                raise RuntimeError(f"the sender exited with {code}")
            result = json.loads((await process.stdout.read()).decode().strip().splitlines()[-1])
            sender.client_cpu, sender.wall = result["client_cpu"], result["wall"]
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()

    async def _watch(self, starter: asyncio.Task[Any] | None) -> None:
        code = await self.process.wait()
        if code != 0 and starter is not None:
            self.failed = code
            starter.cancel()


async def _send_when_told(peer: Peer, n: int) -> dict[str, float]:
    """The sender's side: the library's ``send``, its loop held until ``go``."""

    async def gate() -> None:
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if line.strip() != "go":
            raise SystemExit(f"send_process: expected go, got {line!r}")

    meter = Meter(None, gate=gate)
    await peer.send(n, meter)
    return {"client_cpu": meter.client_cpu, "wall": meter.wall}


async def wait_until_empty(url: str, query: str) -> None:
    """Poll the database until ``query`` counts nothing (for the tail of a run only)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(query)
            row = await cur.fetchone()
            if row and row[0] == 0:
                return
            await asyncio.sleep(0.005)


@contextmanager
def fresh_database(url: str, library: str) -> Iterator[str]:
    name = f"bench_{library}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(url, dbname=name)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def bytes_in_schema(url: str, schema: str) -> int:
    """Tables, indexes and TOAST of ``schema`` after a plain VACUUM (dead rows reusable).

    Bytes per job subtract the size of the empty schema, measured right after install:
    the first pages of every table and index would otherwise weigh on small runs.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r'",
            [schema],
        ).fetchall()
        for (table,) in tables:
            conn.execute(sql.SQL("VACUUM {}").format(sql.SQL(table)))
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r'",
            [schema],
        ).fetchone()
    return int(row[0]) if row else 0


def main(library: str, make: Callable[[str], Peer]) -> None:
    parser = argparse.ArgumentParser(description=f"one {library} measurement, as JSON")
    parser.add_argument("shape", choices=(*SHAPES, SENDER))
    parser.add_argument("--url", required=True, help="the server; a fresh database is made")
    parser.add_argument("-n", type=int, default=1_000, help="jobs, or latency samples")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--settings-only", action="store_true", help="print settings only")
    args = parser.parse_args()
    if args.shape == SENDER:  # in the database its worker made ready
        print(json.dumps(asyncio.run(_send_when_told(make(args.url), args.n))))
        return
    if args.settings_only:
        print(json.dumps({"settings": make(args.url).settings(args.shape, args.concurrency)}))
        return
    with fresh_database(args.url, library) as url:
        print(json.dumps(asyncio.run(_measure(url, make(url), args))))


async def _measure(url: str, peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    await peer.install()
    empty = bytes_in_schema(url, peer.schema)
    meter = Meter(ServerCpu(url))
    result: dict[str, Any] = {
        "version": importlib.metadata.version(peer.package),
        "settings": peer.settings(args.shape, args.concurrency),
    }
    if args.shape == "send":
        await peer.send(args.n, meter)
    elif args.shape == "batch":
        await peer.batch(args.n, meter)
    elif args.shape in ("process", "process_plain"):
        await peer.process(args.n, args.concurrency, args.shape == "process_plain", meter)
        result["bytes_per_job"] = (bytes_in_schema(url, peer.schema) - empty) / args.n
    elif args.shape == "send_process":
        async with Sender.started(url, args.n) as sender:
            await peer.send_process(args.n, args.concurrency, sender.go, meter)
        result["send_per_second"] = args.n / sender.wall
        result["worker_client_us"] = meter.client_cpu / args.n * 1e6
        result["sender_client_us"] = sender.client_cpu / args.n * 1e6
        meter.client_cpu += sender.client_cpu
    else:
        latencies = await peer.latency(args.n, meter)
        quantiles = statistics.quantiles(latencies, n=100)
        result["p50_ms"], result["p99_ms"] = quantiles[49], quantiles[98]
    result["per_second"] = meter.count / meter.wall
    result["client_us"] = meter.client_cpu / meter.count * 1e6
    if meter.server_cpu is not None:
        result["server_us"] = meter.server_cpu / meter.count * 1e6
    return result
