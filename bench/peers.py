"""commandbus next to its peers, PgQueuer, procrastinate and oban-py, on one server.

    hatch run peers:bench [--rounds N] [--sends N] [--batched N] [--jobs N] [--flow-jobs N] ...

Absolute figures differ between machines (and between runs of a shared host) by far more
than the differences we care about, so every library is measured on the same server in
the same run, in interleaved rounds (the order of the libraries rotates every round), and
the table shows medians and the ratio commandbus / best peer. Shapes of work:

* enqueue one job at a time, each its own transaction (commandbus ``send`` in a loop),
* enqueue in batches of 1,000, one transaction each (``send_batch``),
* process no-op jobs from a full queue, one worker process, the best of ``--concurrency``
  for each library, with an ``async def`` handler, and with a plain ``def`` one,
* send and process at once: one process enqueues one job at a time at full speed (the
  ``send`` loop above) while a worker in a second process, started and idle beforehand,
  drains with an ``async def`` no-op handler at ``--flow-concurrency`` (one fixed
  concurrency for every library: the sender, not the worker, bounds the rate, so in-flight
  jobs stay far below 100); the figure is jobs completed per second from the first send
  to the last completion, with the CPU of both processes. Two processes, as an
  application and its worker run: in one, the send loop and the worker would share one
  event loop and one core,
* latency from enqueue to handler start on an idle worker woken by LISTEN/NOTIFY,
* bytes per job kept by the library after processing them: tables, indexes and TOAST of
  its schema after a plain VACUUM, less the same of the empty schema, divided by the jobs.

Every measurement runs in a child process (``bench/peer_<library>.py``, printing JSON) in
a fresh database, so each library gets the same cold start and its own schema; oban needs
Python >= 3.12 and runs from the ``peers-oban`` hatch environment, the others from
``peers``. Each child also reports client CPU (its own ``process_time``) and server CPU
(all processes of the server, from /proc; only when the server runs on this machine) per
job. Uses ``DATABASE_URL`` when set, else a throwaway PostgreSQL with durable settings
(fsync and synchronous_commit on). The peers are installed in the bench environments
only; none is a dependency of commandbus.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).parent))

from _common import server_url

HERE = Path(__file__).parent
ROOT = HERE.parent
BATCH = 1_000


@dataclass(frozen=True)
class Library:
    name: str
    script: str
    python: str
    #: Shapes the library cannot do (PgQueuer entrypoints must be async).
    unsupported: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Run:
    shape: str
    n: int
    concurrency: int = 0


def oban_python(explicit: str | None) -> str | None:
    """The interpreter of the ``peers-oban`` environment (created on first use)."""
    if explicit:
        return explicit
    if shutil.which("hatch") is None:
        return None
    command = [
        "hatch",
        "-e",
        "peers-oban",
        "run",
        "python",
        "-c",
        "import sys, oban; print(sys.executable)",
    ]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0 and shutil.which("pyenv"):
        # pyenv's shims hide every version but the selected one: show hatch a 3.12 too.
        bare = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False
        ).stdout.split()
        found = [v for v in bare if v.startswith("3.12.")]
        if found:
            current = subprocess.run(
                ["pyenv", "version-name"], capture_output=True, text=True, check=False
            ).stdout.strip()
            env = {**os.environ, "PYENV_VERSION": f"{current}:{found[-1]}"}
            out = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, check=False, env=env
            )
    if out.returncode != 0:
        print(f"oban left out: no peers-oban environment\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return out.stdout.strip().splitlines()[-1]


def measure(library: Library, run: Run, url: str) -> dict[str, Any] | None:
    command = [library.python, str(HERE / library.script), run.shape, "--url", url]
    command += ["-n", str(run.n), "--concurrency", str(run.concurrency)]
    out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if out.returncode != 0:
        print(f"{library.name} {run.shape} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def describe_server(url: str) -> str:
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings = dict(
            conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN ('fsync',"
                " 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'max_connections')"
            ).fetchall()
        )
    shown = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
    return f"PostgreSQL {version[0] if version else '?'} ({shown}); {os.cpu_count()} CPUs"


class Results:
    """Every figure, keyed by (library, shape, concurrency), a list over rounds."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)

    def add(self, library: str, run: Run, result: dict[str, Any]) -> None:
        self.runs[(library, run.shape, run.concurrency)].append(result)

    def median(self, library: str, shape: str, concurrency: int, key: str) -> float | None:
        values = [r[key] for r in self.runs.get((library, shape, concurrency), []) if key in r]
        return statistics.median(values) if values else None

    def best_concurrency(self, library: str, shape: str, options: list[int]) -> int | None:
        rates = {c: self.median(library, shape, c, "per_second") for c in options}
        known = {c: r for c, r in rates.items() if r is not None}
        return max(known, key=lambda c: known[c]) if known else None

    def first(self, library: str, shape: str, concurrency: int, key: str) -> Any:
        for result in self.runs.get((library, shape, concurrency), []):
            if key in result:
                return result[key]
        return None


@dataclass
class Row:
    label: str
    unit: str
    shape: str
    key: str
    #: Concurrency options: the best one is shown (0: not a worker shape).
    options: list[int]
    higher_is_better: bool = True
    digits: int = 0


def cell(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def report(
    results: Results, libraries: list[Library], rows: list[Row], args: argparse.Namespace
) -> None:
    names = [lib.name for lib in libraries]
    versions = {
        lib.name: next(
            (r[0]["version"] for k, r in results.runs.items() if k[0] == lib.name and r), "?"
        )
        for lib in libraries
    }
    heads = [f"{name} {versions[name]}" for name in names]
    width = max(18, *(len(h) for h in heads))
    print(f"\nmedian of {args.rounds} interleaved rounds; for worker rows each library's best")
    print(f"of concurrency {args.concurrency} is shown with its concurrency (c=).")
    print("ratio = commandbus / best peer: above 1 is better for jobs/s, below 1 for ms and")
    print("bytes.\n")
    label_width = max(len(f"{row.label}, {row.unit}") for row in rows)
    print(
        f"| {'work':<{label_width}} | " + " | ".join(f"{h:>{width}}" for h in heads) + " | ratio |"
    )
    print(
        f"| {'-' * label_width} |" + "|".join("-" * (width + 1) + ":" for _ in heads) + "| -----:|"
    )
    cpu_lines: list[str] = []
    for row in rows:
        values: dict[str, float | None] = {}
        texts: list[str] = []
        cpu_cells: list[str] = []
        for name in names:
            c = results.best_concurrency(name, row.shape, row.options) if row.options[0] else 0
            value = None if c is None else results.median(name, row.shape, c, row.key)
            values[name] = value
            text = cell(value, row.digits)
            if value is not None and row.options[0]:
                text = f"{text} (c={c})"
            texts.append(text)
            if row.key in ("per_second", "p50_ms") and c is not None:
                client = results.median(name, row.shape, c, "client_us")
                server = results.median(name, row.shape, c, "server_us")
                cpu_cells.append("n/a" if client is None else f"{client:,.0f} / {cell(server, 0)}")
            else:
                cpu_cells.append("n/a")
        ours = values.get("commandbus")
        peers = [v for k, v in values.items() if k != "commandbus" and v is not None]
        ratio = "  n/a"
        if ours is not None and peers:
            best = max(peers) if row.higher_is_better else min(peers)
            ratio = f"{ours / best:5.2f}" if best else "  n/a"
        label = f"{row.label}, {row.unit}"
        print(
            f"| {label:<{label_width}} | "
            + " | ".join(f"{t:>{width}}" for t in texts)
            + f" | {ratio} |"
        )
        if row.key in ("per_second", "p50_ms"):
            cpu_label = row.label if row.key == "per_second" else "idle send-to-handler (per job)"
            cpu_lines.append(
                f"| {cpu_label:<{label_width}} | "
                + " | ".join(f"{t:>{width}}" for t in cpu_cells)
                + " |"
            )
    print("\nCPU per job, µs: client (the measuring process) / server (all server processes;")
    print("n/a when the server is not on this machine), same runs as above\n")
    print(f"| {'work':<{label_width}} | " + " | ".join(f"{h:>{width}}" for h in heads) + " |")
    print(f"| {'-' * label_width} |" + "|".join("-" * (width + 1) + ":" for _ in heads) + "|")
    for line in cpu_lines:
        print(line)
    print("\nsettings")
    shapes = ("send", "batch", "process", "process_plain", "send_process", "latency")
    for name in names:
        print(f"\n{name} {versions[name]}:")
        for shape in shapes:
            for (lib, s, c), found in sorted(results.runs.items()):
                if lib == name and s == shape and found:
                    print(f"  {shape}{f' c={c}' if c else ''}: {found[0]['settings']}")


def main(args: argparse.Namespace) -> None:
    peers_python = sys.executable
    libraries = [
        Library("commandbus", "peer_commandbus.py", peers_python),
        Library("PgQueuer", "peer_pgqueuer.py", peers_python, frozenset({"process_plain"})),
        Library("procrastinate", "peer_procrastinate.py", peers_python),
    ]
    if "oban" in args.libraries:
        python = oban_python(args.oban_python)
        if python:
            libraries.append(Library("oban", "peer_oban.py", python))
    libraries = [lib for lib in libraries if lib.name.lower() in args.libraries]
    slow = {"procrastinate": args.procrastinate_jobs}
    runs = [Run("send", args.sends), Run("batch", args.batched)]
    runs += [Run("process", args.jobs, c) for c in args.concurrency]
    runs += [Run("process_plain", args.jobs // 2, args.plain_concurrency)]
    runs += [Run("send_process", args.flow_jobs, args.flow_concurrency)]
    runs += [Run("latency", args.samples)]
    rows = [
        Row("enqueue one at a time", "jobs/s", "send", "per_second", [0]),
        Row(f"enqueue in batches of {BATCH:,}", "jobs/s", "batch", "per_second", [0]),
        Row(
            "process no-op jobs, async handler", "jobs/s", "process", "per_second", args.concurrency
        ),
        Row(
            "process no-op jobs, plain def handler",
            "jobs/s",
            "process_plain",
            "per_second",
            [args.plain_concurrency],
        ),
        Row(
            "send and process at once, async handler",
            "jobs/s",
            "send_process",
            "per_second",
            [args.flow_concurrency],
        ),
        Row("idle send-to-handler p50", "ms", "latency", "p50_ms", [0], False, 2),
        Row("idle send-to-handler p99", "ms", "latency", "p99_ms", [0], False, 2),
        Row(
            "bytes per job after processing",
            "B",
            "process",
            "bytes_per_job",
            args.concurrency,
            False,
        ),
    ]
    results = Results()
    started = time.perf_counter()
    with server_url() as url:
        print(describe_server(url), file=sys.stderr)
        for round_no in range(args.rounds):
            order = libraries[round_no % len(libraries) :] + libraries[: round_no % len(libraries)]
            for run in runs:
                for library in order:
                    if run.shape in library.unsupported:
                        continue
                    n = (
                        min(run.n, slow[library.name])
                        if library.name in slow and "process" in run.shape
                        else run.n
                    )
                    sized = Run(run.shape, n, run.concurrency)
                    child_started = time.perf_counter()
                    result = measure(library, sized, url)
                    took = time.perf_counter() - child_started
                    if result is None:
                        continue
                    results.add(library.name, run, result)
                    figure = (
                        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
                        if run.shape == "latency"
                        else f"{result['per_second']:,.0f}/s"
                    )
                    if "send_per_second" in result:
                        figure += (
                            f" (send loop {result['send_per_second']:,.0f}/s; client CPU"
                            f" per job: sender {result['sender_client_us']:,.0f} µs,"
                            f" worker {result['worker_client_us']:,.0f} µs)"
                        )
                    concurrency = f" c={run.concurrency}" if run.concurrency else ""
                    print(
                        f"round {round_no + 1}/{args.rounds} {run.shape}{concurrency} "
                        f"{library.name} (n={n:,}): {figure} [{took:.0f} s]",
                        file=sys.stderr,
                    )
        server = describe_server(url)
    report(results, libraries, rows, args)
    print(f"\n{server}; run took {time.perf_counter() - started:.0f} s")
    print(
        f"jobs: {args.sends:,} single enqueues, {args.batched:,} batched, {args.jobs:,} processed"
        f" per async run ({args.jobs // 2:,} plain; procrastinate {args.procrastinate_jobs:,}),"
        f" {args.flow_jobs:,} sent and processed at once (procrastinate"
        f" {min(args.flow_jobs, args.procrastinate_jobs):,}),"
        f" {args.samples} latency samples after 20 warm-up ones"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sends", type=int, default=5_000, help="single enqueues per run")
    parser.add_argument("--batched", type=int, default=20_000, help="jobs enqueued in batches")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs processed per run")
    parser.add_argument(
        "--procrastinate-jobs",
        type=int,
        default=2_000,
        help="jobs per processing run for procrastinate, which fetches one job per query",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--plain-concurrency", type=int, default=50)
    parser.add_argument(
        "--flow-jobs", type=int, default=10_000, help="jobs sent and processed at once per run"
    )
    parser.add_argument(
        "--flow-concurrency",
        type=int,
        default=100,
        help="the worker's concurrency while sending and processing at once",
    )
    parser.add_argument("--samples", type=int, default=200, help="latency samples per run")
    parser.add_argument(
        "--libraries",
        nargs="+",
        default=["commandbus", "pgqueuer", "procrastinate", "oban"],
        type=str.lower,
    )
    parser.add_argument("--oban-python", help="a Python >= 3.12 with oban installed")
    main(parser.parse_args())


if __name__ == "__main__":
    cli()
