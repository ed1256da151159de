"""Polling helpers for blocking tests: wait for a condition with a deadline, never sleep
a fixed time as synchronisation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from commandbus import CommandMetadata, CommandStatus
from commandbus_sync import SyncCommandBus

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], *, timeout: float = 10, interval: float = 0.02, what: str = "condition"
) -> T:
    """Call ``probe`` until it returns something truthy; return it, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {value!r})")
        time.sleep(interval)


def wait_for_status(
    bus: SyncCommandBus,
    domain: str,
    command_id: uuid.UUID,
    status: CommandStatus,
    *,
    timeout: float = 10,
) -> CommandMetadata:
    """Poll the command until it has ``status``; return its metadata."""

    def probe() -> CommandMetadata | None:
        meta = bus.get_command(domain, command_id)
        return meta if meta is not None and meta.status is status else None

    meta = wait_until(probe, timeout=timeout, what=f"{domain}/{command_id} {status}")
    assert meta is not None
    return meta


def wait_for_idle_pool(pool: Any, *, timeout: float = 5) -> None:
    """Every connection back in the pool. Polled: a connection a worker closed (e.g. its
    listener, cancelled mid-reset) is replaced by the pool asynchronously; one still
    held after the deadline is a leak."""

    def idle() -> bool:
        stats = pool.get_stats()
        return bool(
            stats["pool_size"] == stats["pool_available"] and stats.get("requests_waiting", 0) == 0
        )

    wait_until(idle, timeout=timeout, what=f"idle pool (stats {pool.get_stats()})")


class BlockingRun:
    """``facade.run()`` (block=True) in a thread, as a worker process's main thread would
    call it: ``returned`` is set when it returns, ``errors`` holds what it raised."""

    def __init__(self, facade: Any) -> None:
        self.returned = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, args=(facade,))
        self.thread.start()

    def _serve(self, facade: Any) -> None:
        try:
            facade.run()
        except BaseException as exc:  # pragma: no cover - asserted by the tests
            self.errors.append(exc)
        finally:
            self.returned.set()


def spawn_script(code: str, **env: str) -> subprocess.Popen[str]:
    """Run ``code`` (dedented) in a fresh interpreter with ``env`` added; pipes as text."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
