"""commandbus's django.tasks backend against django-tasks-db, same server, same run.

    hatch run django-bench:bench [--tasks 20000]

For each backend: a view enqueues one no-op task in ``transaction.atomic()``, called
``--tasks`` times in a loop through Django's test client (the request cycle included);
then one worker process of each (``manage.py commandbus worker``, concurrency 10, and
django-tasks-db's ``db_worker``, its defaults) processes them, timed from its first
finished task to its last. Django 5.2 with the django-tasks backport (django-tasks-db
needs it there too). The server is DATABASE_URL, else a throwaway one with durable
settings.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import server_url  # noqa: E402
from peers import describe_server  # noqa: E402


def setup_django(url: str) -> None:
    os.environ["BENCH_DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "_django_settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def enqueue_rate(path: str, count: int) -> float:
    from django.test import Client

    client = Client()
    assert client.post(path).status_code == 201  # warm up (connection, imports)
    started = time.perf_counter()
    for _ in range(count):
        client.post(path)
    return count / (time.perf_counter() - started)


def finished(url: str, backend: str) -> int:
    query = {
        "commandbus": "SELECT count(*) FROM commandbus.commands WHERE status = 'COMPLETED'",
        "django-tasks-db": "SELECT count(*) FROM django_tasks_database_dbtaskresult "
        "WHERE status = 'SUCCESSFUL'",
    }[backend]
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def process_rate(url: str, backend: str, total: int, timeout: float, log: Path) -> float:
    """Start the backend's worker; tasks per second from its first finished task to
    its last (its start-up left out)."""
    command = {
        "commandbus": ["commandbus", "worker", "--retention", "off"],
        "django-tasks-db": ["db_worker", "--backend", "db", "--no-startup-delay"],
    }[backend]
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "django", *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        first = 0
        while (first := finished(url, backend)) == 0:
            check_alive(worker, deadline, log)
            time.sleep(0.01)
        started = time.perf_counter()
        done = first
        while done < total:
            check_alive(worker, deadline, log)
            time.sleep(0.05)
            done = finished(url, backend)
        return (done - first) / (time.perf_counter() - started)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def check_alive(worker: subprocess.Popen[bytes], deadline: float, log: Path) -> None:
    if worker.poll() is not None:
        raise SystemExit(f"the worker exited:\n{log.read_text()[-3000:]}")
    if time.monotonic() > deadline:
        raise SystemExit("the worker did not finish in time")


def versions() -> str:
    from importlib.metadata import version

    names = ("django", "django-tasks", "django-tasks-db", "commandbus-core")
    return ", ".join(f"{name} {version(name)}" for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    with server_url() as url:
        setup_django(url)
        rows = {}
        for backend, path in (
            ("commandbus", "/commandbus/"),
            ("django-tasks-db", "/django-tasks-db/"),
        ):
            enqueued = enqueue_rate(path, args.tasks)
            log = Path(tempfile.gettempdir()) / f"bench_django_{backend}.log"
            processed = process_rate(url, backend, args.tasks + 1, args.timeout, log)
            rows[backend] = (enqueued, processed)
            print(f"{backend}: enqueue {enqueued:,.0f}/s, process {processed:,.0f}/s", flush=True)
        ours, theirs = rows["commandbus"], rows["django-tasks-db"]
        print(f"\n{args.tasks:,} no-op tasks per backend; {versions()}")
        print(describe_server(url) + "\n")
        print("| work | commandbus | django-tasks-db | ratio |")
        print("| --- | ---: | ---: | ---: |")
        labels = ("enqueue from a view, one per request", "process no-op tasks, one worker")
        for index, label in enumerate(labels):
            ratio = ours[index] / theirs[index]
            print(f"| {label} | {ours[index]:,.0f}/s | {theirs[index]:,.0f}/s | {ratio:.2f} |")


if __name__ == "__main__":
    main()
