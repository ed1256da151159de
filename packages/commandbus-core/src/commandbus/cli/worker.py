"""``commandbus worker APP:REGISTRY --domain D``: run handlers until SIGINT or SIGTERM.

The first signal stops the worker gracefully: no new leases, in-flight handlers get
``--stop-timeout`` seconds. A second signal cancels them (their commands are delivered
again when their leases expire).

With ``--processes N``, or several ``--domain NAME=CONCURRENCY``, it starts and supervises
worker processes instead: N per domain, restarted when they exit, stopped by SIGTERM
(a second SIGTERM stops them at once). See docs/operations.md, "Scaling workers".
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from datetime import timedelta
from types import FrameType
from typing import Any

import psycopg

from commandbus._validation import check_lease, check_stop_timeout
from commandbus.cli import _supervisor
from commandbus.cli._args import (
    Parser,
    UsageError,
    checked,
    concurrency_arg,
    int_range,
    non_negative_seconds,
    positive_int,
    seconds,
)
from commandbus.cli._connect import CONNECT_TIMEOUT, connect_kwargs, open_pool, resolve_dsn
from commandbus.cli.retention import duration
from commandbus.cli.schedules import load_schedules
from commandbus.handlers import HandlerRegistry
from commandbus.pruner import DEFAULT_RETENTION, Retention
from commandbus.retry import RetryPolicy
from commandbus.worker import Worker

log = logging.getLogger("commandbus.cli")

#: Pool connections beyond what the worker itself may hold (e.g. handlers' own queries).
HEADROOM = 2
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_parser(commands: Any, common: Parser) -> None:
    parser = commands.add_parser(
        "worker",
        parents=[common],
        help="run the handlers of one domain",
        description=(__doc__ or "").replace("``", ""),  # the help text is plain, not rST
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "app",
        metavar="APP:REGISTRY",
        help="module and its HandlerRegistry, e.g. shop.handlers:registry",
    )
    _supervisor.add_arguments(parser)  # --domain NAME[=CONCURRENCY] ..., --processes N
    parser.add_argument("--concurrency", type=concurrency_arg, default=10, help="(default 10)")
    parser.add_argument(
        "--stop-timeout",
        type=checked(seconds, check_stop_timeout),
        default=30.0,
        metavar="SECONDS",
        help="(default 30)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=checked(seconds, lambda value: check_lease("visibility_timeout", value)),
        default=30.0,
        metavar="SECONDS",
        help="lease length: a command whose handler runs longer (without "
        "ctx.extend_visibility) is delivered again (default 30)",
    )
    parser.add_argument(
        "--backoff",
        type=backoff_seconds,
        default=None,
        metavar="S1,S2,...",
        help="seconds before retry 1, 2, ...; the last repeats (default 10,60,300)",
    )
    parser.add_argument(
        "--max-attempts",
        type=positive_int,
        default=None,
        metavar="N",
        help="the retry policy's max_attempts (default 3). A command's own budget, fixed "
        "when it was sent (send(max_attempts=...) or CommandBus(default_max_attempts=...), "
        "default 3), wins: the worker warns once if they differ",
    )
    parser.add_argument(
        "--retention",
        type=retention_age,
        default=DEFAULT_RETENTION.older_than,
        metavar="AGE|off",
        help="delete finished commands, batches and processes older than AGE, e.g. 30d "
        "(default 7d; 'off' keeps everything)",
    )
    parser.add_argument(
        "--schedules",
        default=None,
        metavar="MODULE:ATTR",
        help="a list of commandbus.Schedule to send periodically, e.g. shop.jobs:SCHEDULES",
    )
    parser.add_argument(
        "--threads",
        type=concurrency_arg,
        default=None,
        metavar="N",
        help="threads for plain-def handlers (default: COMMAND_BUS_SYNC_THREADS with --sync, "
        "else --concurrency)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int_range(0, 65_535),
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on PORT (needs commandbus[prometheus])",
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help="run through commandbus-sync's SyncWorker (plain-def handlers in a thread pool)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if _supervisor.wanted(args):
        return _supervisor.supervise(args, load_registry)
    registry = load_registry(args.app, args.domain)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("psycopg").setLevel(logging.WARNING)
    if args.sync:
        return _run_sync(args, registry)
    return asyncio.run(_run_async(args, registry))


def load_registry(spec: str, domain: str) -> HandlerRegistry:
    """Import ``module:attribute`` and check it is a registry with handlers for ``domain``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"APP:REGISTRY must look like 'package.module:registry', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as with `python -m`: find modules of the project
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name != missing and not module_name.startswith(missing + "."):
            raise  # the module exists but imports something missing: its traceback helps
        raise UsageError(f"cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"{module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not isinstance(target, HandlerRegistry):
        raise UsageError(f"{spec} is a {type(target).__name__}, not a HandlerRegistry")
    if domain not in target.domains():
        known = ", ".join(sorted(target.domains())) or "none"
        raise UsageError(f"{spec} has no handler for domain {domain!r} (domains: {known})")
    return target


async def _run_async(args: argparse.Namespace, registry: HandlerRegistry) -> int:
    async with open_pool(args) as pool:
        worker = _worker(pool, args, registry)
        await pool.resize(1, worker.required_connections() + HEADROOM)
        task = asyncio.create_task(worker.run())
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        def stop() -> None:
            if stopping:
                log.warning("second signal: cancelling in-flight handlers")
                task.cancel()
                return
            log.info("stopping: waiting up to %ss for in-flight handlers", args.stop_timeout)
            stopping.append(asyncio.create_task(worker.stop(args.stop_timeout)))

        def on_signal(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(stop)

        previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
        try:
            _log_start(worker, pool.max_size)
            await task
        except asyncio.CancelledError:
            if not stopping:
                raise
            return 130
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("stopped: %s", worker.stats)
        return 0


def _run_sync(args: argparse.Namespace, registry: HandlerRegistry) -> int:
    try:
        from commandbus_sync import SyncRuntime, SyncWorker
        from commandbus_sync.config import configured_thread_pool_size
    except ImportError:
        raise UsageError(
            '--sync needs the synchronous companion: pip install "commandbus[sync]"'
        ) from None
    dsn = resolve_dsn(args)
    kwargs = connect_kwargs(dsn)
    if getattr(args, "no_prepare", False):  # PgBouncer before 1.21: --no-prepare
        kwargs["prepare_threshold"] = None
    psycopg.connect(dsn, **kwargs).close()  # fail fast, with libpq's reason
    with SyncRuntime() as runtime:
        pool = runtime.open_pool(
            dsn, min_size=1, max_size=2, kwargs=kwargs, timeout=CONNECT_TIMEOUT * 2
        )
        # As for any SyncWorker: COMMAND_BUS_SYNC_THREADS (validated) sizes the handler pool.
        threads = configured_thread_pool_size()
        worker = _worker(pool, args, registry, threads)
        runtime.run(pool.resize, 1, worker.required_connections() + HEADROOM)
        _log_start(worker, pool.max_size)
        sync_worker = SyncWorker(worker, runtime=runtime)
        sync_worker.signal_stop_timeout = args.stop_timeout
        sync_worker.run()  # blocks; Ctrl-C or SIGTERM stop it gracefully
    log.info("stopped: %s", worker.stats)
    return 0


def _worker(
    pool: Any, args: argparse.Namespace, registry: HandlerRegistry, threads: int | None = None
) -> Worker:
    return Worker(
        pool,
        domain=args.domain,
        registry=registry,
        concurrency=args.concurrency,
        thread_pool_size=args.threads or threads,
        visibility_timeout=args.visibility_timeout,
        retry_policy=_retry_policy(args),
        retention=None if args.retention is None else Retention(older_than=args.retention),
        schedules=() if args.schedules is None else load_schedules(args.schedules),
        schema=args.schema,
        hooks=_metrics_hooks(args),
        listen_conninfo=getattr(args, "listen_dsn", None),
    )


def retention_age(text: str) -> timedelta | None:
    """``off`` (None) or a duration such as ``7d``."""
    return None if text.strip().lower() == "off" else duration(text)


def backoff_seconds(text: str) -> tuple[float, ...]:
    """``10,60,300``: finite, non-negative seconds, at least one."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"must be seconds separated by commas, got {text!r}")
    return tuple(non_negative_seconds(part) for part in parts)


def _retry_policy(args: argparse.Namespace) -> RetryPolicy | None:
    """The policy the flags describe; None (the worker's default) when none is given."""
    if args.backoff is None and args.max_attempts is None:
        return None
    default = RetryPolicy()
    return RetryPolicy(
        max_attempts=default.max_attempts if args.max_attempts is None else args.max_attempts,
        backoff=default.backoff if args.backoff is None else args.backoff,
    )


def _metrics_hooks(args: argparse.Namespace) -> list[Any]:
    """With ``--metrics-port``: serve /metrics (with the database gauges) and return the
    hook that feeds the counters and histograms."""
    if args.metrics_port is None:
        return []
    try:
        from commandbus.metrics import Metrics, serve_metrics
    except ImportError:
        raise UsageError(
            '--metrics-port needs prometheus-client: pip install "commandbus[prometheus]"'
        ) from None
    metrics = Metrics()
    server = serve_metrics(
        args.metrics_port, metrics=metrics, conninfo=resolve_dsn(args), schema=args.schema
    )
    log.info("serving Prometheus metrics on port %d (/metrics)", server.server_port)
    return [metrics]


def _log_start(worker: Worker, pool_size: int) -> None:
    log.info(
        "worker %s: domain %r, concurrency %d, %d connections; stop with Ctrl-C or SIGTERM",
        worker.name,
        worker.domain,
        worker.concurrency,
        pool_size,
    )
