"""Soak: steady mixed load through 2 supervised worker processes, sampled, then checked.

    python bench/soak.py [--minutes 10] [--kill-every K] [--restart-db-at S] [--out DIR]

A throwaway PostgreSQL with durable settings (or DATABASE_URL), migrated; then
``commandbus worker _soak_app:registry --domain soak --processes 2`` (the supervisor of
issue #16) and, in this process, the load and a saga router:

* single sends at ``--rate`` per second, a batch of ``--batch`` every second, and
  ``--sagas`` two-step sagas per second; 5 % of commands fail their first attempt
  (transient: retried after the worker's backoff), one in 500 fails permanently;
* a pruner (commandbus.Pruner) deleting finished work older than ``--retention`` seconds;
* with ``--kill-every K``: SIGKILL a random worker process every K seconds (the supervisor
  starts it again); with ``--restart-db-at S``: restart PostgreSQL (``pg_ctl restart -m
  immediate``, a crash) once, S seconds in.

Every ``--sample`` seconds it records throughput (completions/s), send-to-start latency
p50/p99 (commands that succeeded at their first attempt), queue depth, table and index
sizes, dead tuples, the workers' RSS and open connections, into ``soak.csv`` and
``soak.png`` (matplotlib) under ``--out``.

It exits 1 when, comparing the last tenth of the run with the first (leaving out samples
taken within 30 s after a kill or the restart: they are plotted, grey lines mark the
events): throughput fell
below 90 %; latency p99 more than doubled (and by more than 50 ms, below which a loaded
2-core machine is noise); the schema's size or the workers' RSS kept growing through the
second half (more than 25 % above their value at half time, plus slack); or, after the
load stops and the queue drains, any command was lost (no ledger row) or completed twice
(two rows), any saga did not complete, or a permanent failure is not in the
troubleshooting queue. Ledger rows are written by the handlers in the worker's
transaction (``ctx.conn``), so a row exists exactly when a completion committed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from _soak_app import DOMAIN, LEDGER, LEDGER_DDL, REPLY_QUEUE, SoakSaga
from commandbus import (
    CommandBus,
    DuplicateCommandError,
    ProcessReplyRouter,
    ProcessRepository,
    Pruner,
    Retention,
    SendRequest,
    migrate,
)
from commandbus.testing import find_server_binaries, postgres_server

SCHEMA = "commandbus"
COLUMNS = [
    "t",
    "sent",
    "completed",
    "throughput",
    "p50_ms",
    "p99_ms",
    "queue",
    "schema_mb",
    "commands_mb",
    "commands_idx_mb",
    "audit_mb",
    "dead_tuples",
    "rss_mb",
    "connections",
    "workers",
    "disturbed",
]
#: Samples this soon after a kill or the restart are plotted but left out of the trend
#: checks (a restarted process imports for seconds, then works off the backlog).
DISTURBED_S = 30.0


@dataclass
class Run:
    args: argparse.Namespace
    url: str
    data_dir: str | None
    sent: dict[uuid.UUID, str] = field(default_factory=dict)  # id -> "ok" | "permanent"
    sagas: list[uuid.UUID] = field(default_factory=list)
    samples: list[dict[str, float]] = field(default_factory=list)
    kills: int = 0
    db_restarted: bool = False
    send_errors: int = 0
    #: Seconds into the run of each kill and of the restart.
    events: list[float] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=40.0, help="single sends per second")
    parser.add_argument("--batch", type=int, default=20, help="commands per batch, one a second")
    parser.add_argument("--sagas", type=float, default=2.0, help="sagas started per second")
    parser.add_argument("--concurrency", type=int, default=10, help="per worker process")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--retention", type=float, default=60.0, help="pruner's older_than, s")
    parser.add_argument("--kill-every", type=float, default=None, metavar="K")
    parser.add_argument("--restart-db-at", type=float, default=None, metavar="S")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--out", type=Path, default=Path("soak-out"))
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--inject-fault",
        choices=["duplicate", "lost"],
        default=None,
        help="before the end check, duplicate or delete one ledger row (tests the check)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: workers, then the server
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)  # a restart is expected
    with postgres_server(fast=False) as server:
        run = Run(args, server.url, server.data_dir)
        return asyncio.run(soak(run))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def soak(run: Run) -> int:
    args = run.args
    with psycopg.connect(run.url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    async with AsyncConnectionPool(run.url, min_size=4, max_size=16, open=False) as pool:
        await migrate(pool, schema=SCHEMA)
        supervisor = _start_workers(run)
        try:
            bus = CommandBus(pool, schema=SCHEMA)
            saga = SoakSaga(bus)
            router = ProcessReplyRouter(
                pool, reply_queue=REPLY_QUEUE, managers=[saga], schema=SCHEMA, concurrency=4
            )
            pruner = Pruner(
                pool,
                Retention(older_than=args.retention, interval=10, chunk_size=1000),
                schema=SCHEMA,
            )
            background = [
                asyncio.create_task(router.run()),
                asyncio.create_task(pruner.run()),
            ]
            await _wait_for_workers(pool, 2)
            duration = args.minutes * 60
            run.t0 = time.monotonic()
            load = [
                asyncio.create_task(_singles(run, bus)),
                asyncio.create_task(_batches(run, bus)),
                asyncio.create_task(_sagas(run, saga)),
                asyncio.create_task(_sampler(run, pool, supervisor)),
            ]
            chaos = [asyncio.create_task(_chaos(run, supervisor))]
            await asyncio.sleep(duration)  # the length of the run
            run.stop.set()
            await asyncio.gather(*load, *chaos)
            print(f"load stopped after {duration:.0f} s; draining", flush=True)
            verdicts = await _drain_and_check(run, pool, ProcessRepository(pool, schema=SCHEMA))
            await router.stop(10)
            await pruner.stop()
            await asyncio.gather(*background, return_exceptions=True)
        finally:
            _stop_workers(supervisor)
    verdicts = _trend_checks(run) + verdicts
    _write_csv(run)
    if not args.no_plot:
        _plot(run)
    for ok, message in verdicts:
        print(("ok   " if ok else "FAIL ") + message, flush=True)
    return 0 if all(ok for ok, _ in verdicts) else 1


# -- the worker processes ------------------------------------------------------------


def _start_workers(run: Run) -> subprocess.Popen[bytes]:
    bench = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([bench, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "commandbus", "--dsn", run.url, "--schema", SCHEMA]
    command += ["worker", "_soak_app:registry", "--domain", f"{DOMAIN}={run.args.concurrency}"]
    command += ["--processes", "2", "--stop-timeout", "10"]
    log = (run.args.out / "workers.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


async def _wait_for_workers(pool: AsyncConnectionPool, n: int) -> None:
    """Until ``n`` workers are registered (started processes take seconds to import)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        async with pool.connection() as conn:
            row = await (
                await conn.execute(f"SELECT count(*) FROM {SCHEMA}.workers WHERE kind = 'worker'")
            ).fetchone()
        if row is not None and row[0] >= n:
            return
        await asyncio.sleep(0.2)  # polling, with the deadline above
    raise SystemExit(f"{n} worker processes did not start within 120 s")


def _stop_workers(supervisor: subprocess.Popen[bytes]) -> None:
    supervisor.send_signal(signal.SIGTERM)
    try:
        supervisor.wait(30)
    except subprocess.TimeoutExpired:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(30)


def _children(supervisor: subprocess.Popen[bytes]) -> list[int]:
    try:
        with open(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children") as f:
            return [int(pid) for pid in f.read().split()]
    except OSError:
        return []


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- the load ------------------------------------------------------------------------


def _flavour(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.002:
        return {"permanent": True}
    if roll < 0.052:
        return {"transient": True}
    return {}


async def _paced(run: Run, per_second: float, action: Any) -> None:
    """Call ``action()`` ``per_second`` times a second (open loop) until the run stops."""
    if per_second <= 0:
        return
    interval = 1 / per_second
    next_at = time.monotonic()
    while not run.stop.is_set():
        await action()
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.stop.wait(), delay)
        elif delay < -5:  # far behind (the server was away): do not burst to catch up
            next_at = time.monotonic()


async def _retrying(run: Run, send: Any) -> bool:
    """Run ``send()`` until it succeeds or says the command exists (an earlier try that
    committed although its answer was lost). False if the run stopped first."""
    while True:
        try:
            await send()
            return True
        except DuplicateCommandError:
            return True
        except (psycopg.Error, OSError, TimeoutError) as exc:
            run.send_errors += 1
            if run.stop.is_set():
                return False
            print(f"send failed ({type(exc).__name__}); retrying", flush=True)
            await asyncio.sleep(0.5)  # the server is away: try again shortly


async def _singles(run: Run, bus: CommandBus) -> None:
    rng = random.Random(1)

    async def one() -> None:
        command_id = uuid.uuid4()
        data = {"t": time.time(), **_flavour(rng)}
        if await _retrying(run, lambda: bus.send(DOMAIN, "Single", command_id, data)):
            run.sent[command_id] = "permanent" if data.get("permanent") else "ok"

    await _paced(run, run.args.rate, one)


async def _batches(run: Run, bus: CommandBus) -> None:
    rng = random.Random(2)

    async def one() -> None:
        requests = [
            SendRequest(DOMAIN, "Batched", uuid.uuid4(), {"t": time.time(), **_flavour(rng)})
            for _ in range(run.args.batch)
        ]
        if await _retrying(run, lambda: bus.send_batch(requests)):
            for r in requests:
                run.sent[r.command_id] = "permanent" if r.data.get("permanent") else "ok"

    await _paced(run, 1.0 if run.args.batch else 0.0, one)


async def _sagas(run: Run, saga: SoakSaga) -> None:
    n = 0

    async def one() -> None:
        nonlocal n
        n += 1
        try:
            run.sagas.append(await saga.start({"n": n}))
        except (psycopg.Error, OSError) as exc:
            run.send_errors += 1  # not started, or started without our knowing: not counted
            print(f"saga start failed ({type(exc).__name__})", flush=True)

    await _paced(run, run.args.sagas, one)


async def _chaos(run: Run, supervisor: subprocess.Popen[bytes]) -> None:
    args = run.args
    started = run.t0
    rng = random.Random(3)
    next_kill = args.kill_every
    while not run.stop.is_set():
        elapsed = time.monotonic() - started
        if next_kill is not None and elapsed >= next_kill:
            next_kill += args.kill_every
            children = _children(supervisor)
            if children:
                victim = rng.choice(children)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
                    run.kills += 1
                    run.events.append(elapsed)
                    print(f"{elapsed:6.1f} s: SIGKILL worker process {victim}", flush=True)
        if (
            args.restart_db_at is not None
            and not run.db_restarted
            and elapsed >= args.restart_db_at
        ):
            run.db_restarted = True
            run.events.append(elapsed)
            print(f"{elapsed:6.1f} s: restarting PostgreSQL (immediate)", flush=True)
            await asyncio.to_thread(_restart_db, run)
            print(f"{time.monotonic() - started:6.1f} s: PostgreSQL is back", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.stop.wait(), 0.2)


def _restart_db(run: Run) -> None:
    bindir = find_server_binaries()
    if run.data_dir is None or bindir is None:
        raise SystemExit("--restart-db-at needs a throwaway server (unset DATABASE_URL)")
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    log = os.path.join(os.path.dirname(run.data_dir), "restart.log")
    pg_ctl = os.path.join(bindir, "pg_ctl")
    subprocess.run(
        [pg_ctl, "-D", run.data_dir, "-m", "immediate", "-w", "-l", log, "restart"],
        check=True,
        capture_output=True,
        timeout=120,
        **run_as,
    )


# -- sampling ------------------------------------------------------------------------

SAMPLE_SQL = f"""
SELECT
  (SELECT count(*) FROM {LEDGER}),
  (SELECT count(*) FROM {SCHEMA}.commands WHERE status IN ('PENDING', 'IN_PROGRESS')),
  (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
     JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = '{SCHEMA}' AND c.relkind = 'r'),
  pg_relation_size('{SCHEMA}.commands'),
  pg_indexes_size('{SCHEMA}.commands'),
  pg_total_relation_size('{SCHEMA}.audit'),
  (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = '{SCHEMA}'),
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
"""
LATENCY_SQL = f"""
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY started_at - sent_at),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY started_at - sent_at)
FROM {LEDGER} WHERE id > %s AND attempt = 1
"""


async def _sampler(
    run: Run, pool: AsyncConnectionPool, supervisor: subprocess.Popen[bytes]
) -> None:
    started = run.t0
    last_count, last_t, last_id = 0, started, 0
    while not run.stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.stop.wait(), run.args.sample)
        if run.stop.is_set():
            return
        try:
            async with pool.connection() as conn:
                row = await (await conn.execute(SAMPLE_SQL)).fetchone()
                latency = await (await conn.execute(LATENCY_SQL, (last_id,))).fetchone()
                top = await (await conn.execute(f"SELECT max(id) FROM {LEDGER}")).fetchone()
        except psycopg.Error as exc:
            print(f"sample failed ({type(exc).__name__}); skipped", flush=True)
            continue
        assert row is not None and latency is not None and top is not None
        now = time.monotonic()
        completed = int(row[0])
        children = _children(supervisor)
        sample = {
            "t": round(now - started, 1),
            "sent": len(run.sent),
            "completed": completed,
            "throughput": (completed - last_count) / (now - last_t),
            "p50_ms": 1000 * float(latency[0] or 0),
            "p99_ms": 1000 * float(latency[1] or 0),
            "queue": int(row[1]),
            "schema_mb": float(row[2]) / 2**20,
            "commands_mb": float(row[3]) / 2**20,
            "commands_idx_mb": float(row[4]) / 2**20,
            "audit_mb": float(row[5]) / 2**20,
            "dead_tuples": int(row[6]),
            "rss_mb": sum(_rss_mb(pid) for pid in children),
            "connections": int(row[7]),
            "workers": len(children),
            "disturbed": float(any(0 <= now - started - e <= DISTURBED_S for e in run.events)),
        }
        run.samples.append(sample)
        last_count, last_t, last_id = completed, now, int(top[0] or last_id)
        print(
            f"{sample['t']:7.1f} s  {sample['throughput']:7.1f}/s  p50 {sample['p50_ms']:6.1f} ms"
            f"  p99 {sample['p99_ms']:7.1f} ms  queue {sample['queue']:5d}"
            f"  schema {sample['schema_mb']:6.1f} MB  dead {sample['dead_tuples']:6d}"
            f"  rss {sample['rss_mb']:6.1f} MB  conns {sample['connections']:3d}",
            flush=True,
        )


# -- the checks ----------------------------------------------------------------------

Verdict = tuple[bool, str]


def _tenth(samples: list[dict[str, float]], key: str, last: bool) -> float:
    n = max(1, len(samples) // 10)
    part = samples[-n:] if last else samples[:n]
    return statistics.fmean(s[key] for s in part)


def _trend_checks(run: Run) -> list[Verdict]:
    s = [x for x in run.samples if not x["disturbed"]]
    if len(s) < 4:
        return [(True, f"trends: only {len(s)} samples, not judged")]
    verdicts: list[Verdict] = []
    first, last = _tenth(s, "throughput", False), _tenth(s, "throughput", True)
    verdicts.append(
        (last >= 0.9 * first, f"throughput last tenth {last:.1f}/s vs first {first:.1f}/s")
    )
    first, last = _tenth(s, "p99_ms", False), _tenth(s, "p99_ms", True)
    verdicts.append(
        (
            last <= 2 * first or last - first <= 50,
            f"latency p99 last tenth {last:.1f} ms vs first {first:.1f} ms",
        )
    )
    half = s[len(s) // 2]
    for key, slack in (("schema_mb", 8.0), ("rss_mb", 30.0)):
        end = _tenth(s, key, True)
        verdicts.append(
            (
                end <= 1.25 * half[key] + slack,
                f"{key} at the end {end:.1f} vs half time {half[key]:.1f} (bounded)",
            )
        )
    return verdicts


async def _drain_and_check(
    run: Run, pool: AsyncConnectionPool, processes: ProcessRepository
) -> list[Verdict]:
    expected = {i for i, kind in run.sent.items() if kind == "ok"}
    if run.args.inject_fault:
        await _inject(run, pool, next(iter(expected)))
    permanent = {i for i, kind in run.sent.items() if kind == "permanent"}
    deadline = time.monotonic() + run.args.drain_timeout
    counts: dict[uuid.UUID, int] = {}
    while True:
        try:
            async with pool.connection() as conn:
                rows = await (
                    await conn.execute(f"SELECT command_id, count(*) FROM {LEDGER} GROUP BY 1")
                ).fetchall()
                counts = {r[0]: int(r[1]) for r in rows}
                # Completed processes may be pruned already: count the unfinished ones.
                open_ = await (
                    await conn.execute(
                        f"SELECT count(*) FROM {SCHEMA}.processes "
                        "WHERE process_id = ANY(%s) AND status <> 'COMPLETED'",
                        (run.sagas,),
                    )
                ).fetchone()
        except psycopg.Error:
            await asyncio.sleep(1)  # the server is still coming back
            continue
        assert open_ is not None
        unfinished = int(open_[0])
        saga_steps = sum(n for i, n in counts.items() if i not in run.sent)
        missing = expected - counts.keys()
        sagas_done = not unfinished and saga_steps >= 2 * len(run.sagas)
        if (not missing and sagas_done) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)  # polling the drain, with the deadline above
    twice = {i: n for i, n in counts.items() if n > 1}
    async with pool.connection() as conn:
        parked = await (
            await conn.execute(
                f"SELECT count(*) FROM {SCHEMA}.commands WHERE command_id = ANY(%s) "
                "AND status = 'IN_TROUBLESHOOTING_QUEUE'",
                (list(permanent),),
            )
        ).fetchone()
    assert parked is not None
    print(
        f"sent {len(run.sent)} commands ({len(permanent)} permanent failures) and "
        f"{len(run.sagas)} sagas ({saga_steps} saga step rows); {run.kills} worker kills; "
        f"database restarted: {run.db_restarted}; send errors retried: {run.send_errors}",
        flush=True,
    )
    return [
        (not missing, f"lost commands (no ledger row): {len(missing)}"),
        (not twice, f"commands completed twice: {len(twice)}"),
        (
            sagas_done,
            f"sagas: {len(run.sagas)} started, {unfinished} unfinished, "
            f"{saga_steps} step completions (two each)",
        ),
        (
            int(parked[0]) == len(permanent),
            f"permanent failures in the troubleshooting queue: {parked[0]} of {len(permanent)}",
        ),
    ]


async def _inject(run: Run, pool: AsyncConnectionPool, command_id: uuid.UUID) -> None:
    """Once the command has its ledger row: copy it (duplicate) or delete it (lost)."""
    deadline = time.monotonic() + run.args.drain_timeout
    async with pool.connection() as conn:
        while time.monotonic() < deadline:
            cur = await conn.execute(
                f"SELECT count(*) FROM {LEDGER} WHERE command_id = %s", (command_id,)
            )
            row = await cur.fetchone()
            await conn.commit()
            if row is not None and row[0]:
                break
            await asyncio.sleep(0.2)  # polling, with the deadline above
        if run.args.inject_fault == "duplicate":
            await conn.execute(
                f"INSERT INTO {LEDGER} (command_id, attempt, sent_at, started_at, pid) "
                f"SELECT command_id, attempt, sent_at, started_at, pid FROM {LEDGER} "
                "WHERE command_id = %s",
                (command_id,),
            )
        else:
            await conn.execute(f"DELETE FROM {LEDGER} WHERE command_id = %s", (command_id,))
    print(f"injected fault: {run.args.inject_fault} ledger row of {command_id}", flush=True)


# -- output --------------------------------------------------------------------------


def _write_csv(run: Run) -> None:
    path = run.args.out / "soak.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for sample in run.samples:
            writer.writerow(
                {k: round(v, 3) if isinstance(v, float) else v for k, v in sample.items()}
            )
    print(f"wrote {path}", flush=True)


def _plot(run: Run) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: plot skipped (hatch run soak:run installs it)", flush=True)
        return
    s = run.samples
    if not s:
        return
    t = [x["t"] / 60 for x in s]
    panels = [
        ("throughput (completed/s)", ["throughput"]),
        ("send-to-start latency (ms)", ["p50_ms", "p99_ms"]),
        ("queue depth", ["queue"]),
        ("sizes (MB)", ["schema_mb", "commands_mb", "commands_idx_mb", "audit_mb"]),
        ("dead tuples", ["dead_tuples"]),
        ("workers' RSS (MB) / connections", ["rss_mb", "connections"]),
    ]
    fig, axes = plt.subplots(3, 2, figsize=(12, 9), sharex=True)
    for ax, (title, keys) in zip(axes.flat, panels, strict=True):
        for key in keys:
            ax.plot(t, [x[key] for x in s], label=key)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    for ax in axes.flat:  # kills and the restart
        for event in run.events:
            ax.axvline(event / 60, color="grey", alpha=0.3, linewidth=0.8)
    for ax in axes[-1]:
        ax.set_xlabel("minutes")
    args = run.args
    fig.suptitle(
        f"commandbus soak: {args.minutes:g} min, 2 worker processes x {args.concurrency}, "
        f"{args.rate:g} single/s + {args.batch}/s batched + {args.sagas:g} sagas/s; "
        f"{run.kills} worker kills, DB restart: {'yes' if run.db_restarted else 'no'}",
        fontsize=10,
    )
    fig.tight_layout()
    path = args.out / "soak.png"
    fig.savefig(path, dpi=90)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
