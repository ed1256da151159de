"""``manage.py commandbus VERB ...``: commandbus's command line on Django's database and
the task backend's schema, with no module to write.

``manage.py commandbus worker`` runs the tasks of the backend's queues (one process per
queue when there are several; ``--processes N`` runs and supervises N per queue;
``--queue NAME`` picks queues). Every other verb is commandbus's own: ``tsq list``,
``commands list``, ``health``, ``prune``, ``schedules``, ``migrate``, ... (``manage.py
commandbus --help``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError

from commandbus.cli import main as commandbus_main
from commandbus_django._connection import conninfo
from commandbus_django.worker import BACKEND_ENV, QUEUES_ENV


class Command(BaseCommand):  # type: ignore[misc]
    help = (__doc__ or "").strip().splitlines()[0]
    # `health` must answer even with a bad setting.
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--backend", default="default", help="the TASKS alias (default: default)"
        )
        parser.add_argument("cli_args", nargs=argparse.REMAINDER, metavar="VERB ...")

    def handle(self, *args: Any, **options: Any) -> None:
        from commandbus_django.apps import our_backends

        alias = options["backend"]
        backend = our_backends().get(alias)
        if backend is None:
            raise CommandError(f"TASKS[{alias!r}] is not a commandbus_django backend")
        problem = backend.database_problem()
        if problem is not None:
            raise CommandError(problem)
        argv = list(options["cli_args"] or ["--help"])
        env = {BACKEND_ENV: alias, "DATABASE_URL": conninfo(backend.settings.database)}
        if argv[0] == "worker":
            argv, queues = worker_argv(backend, argv[1:])
            env[QUEUES_ENV] = ",".join(queues)
            # Supervised worker processes import the project as this one does.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (sys.path[0] or os.getcwd(), os.environ.get("PYTHONPATH")) if p
            )
        with _environment(env):
            status = commandbus_main(["--schema", backend.settings.schema, *argv])
        if status:
            raise CommandError(
                f"commandbus {argv[0]} exited with status {status}", returncode=status
            )


def worker_argv(backend: Any, given: list[str]) -> tuple[list[str], list[str]]:
    """commandbus's ``worker`` arguments for this backend: its registry, its queues as
    domains, the settings' concurrency, lease, backoff, retention and schedules; what
    the caller gave (``--queue`` is ``--domain``) comes last and wins."""
    given = ["--domain" if arg == "--queue" else arg for arg in given]
    queues = [given[i + 1] for i, arg in enumerate(given[:-1]) if arg == "--domain"]
    queues = [q.partition("=")[0] for q in queues]
    settings = backend.settings
    argv = ["worker", "commandbus_django.worker:registry"]
    if not queues:
        queues = sorted(backend.queues)
        if not queues:
            raise CommandError("the backend accepts any queue: name those to serve with --queue")
        for queue in queues:
            argv += ["--domain", queue]
    argv += [
        "--concurrency",
        str(settings.concurrency),
        "--visibility-timeout",
        str(settings.visibility_timeout),
        "--backoff",
        ",".join(f"{delay:g}" for delay in settings.backoff),
        "--retention",
        "off" if settings.retention_days is None else f"{settings.retention_days * 86400:g}s",
        "--schedules",
        "commandbus_django.worker:schedules",
    ]
    return argv + given, queues


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` for the command (and the processes it starts), then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
