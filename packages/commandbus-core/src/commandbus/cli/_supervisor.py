"""``commandbus worker --processes N`` and several ``--domain NAME=CONCURRENCY``.

The supervisor starts one child process per (domain, copy): ``--domain payments=20
--domain emails=5 --processes 2`` runs four children, two serving ``payments`` with 20
handlers each and two serving ``emails`` with 5 each. A child is the same
``commandbus worker`` command line, told by ``COMMANDBUS_WORKER_SLOT`` which domain it
serves: everything else (``--sync``, ``--dsn``, retry and lease flags) applies to every
child as given. ``--metrics-port P`` becomes ``P + i`` in child ``i``.

* A child that exits while the supervisor is not stopping (a crash, ``SIGKILL``, the
  out-of-memory killer) is started again after a backoff: 0.5 s, doubling up to 30 s;
  the count starts over once a child has lived 30 s.
* The first SIGTERM or SIGINT is passed on to every child (each stops gracefully, within
  its ``--stop-timeout``); the supervisor exits 0 once all have exited cleanly. A second
  signal is passed on too (children cancel their in-flight handlers, whose commands come
  back when their leases expire); children still alive 5 s later are killed. Exit 130.
* Children run in their own process group, so a Ctrl-C in a terminal reaches them once,
  through the supervisor; on Linux a child also gets SIGTERM if the supervisor dies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from commandbus.cli._args import UsageError, concurrency_arg, int_range

__all__ = ["SLOT_ENV", "Slot", "Supervisor", "add_arguments", "supervise", "wanted"]

log = logging.getLogger("commandbus.supervisor")

#: Set in a child's environment: which domain (and concurrency) it serves.
SLOT_ENV = "COMMANDBUS_WORKER_SLOT"
#: First restart delay, and the longest.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
#: A child that lived this long before exiting restarts after the first delay again.
STABLE_AFTER_S = 30.0
#: After the second signal, how long children get before SIGKILL.
FORCE_GRACE_S = 5.0
#: Most processes per domain (``--processes``).
MAX_PROCESSES = 1_000


def domain_spec(text: str) -> tuple[str, int | None]:
    """``payments`` or ``payments=20``."""
    name, sep, given = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"must be NAME or NAME=CONCURRENCY, got {text!r}")
    return name, concurrency_arg(given) if sep else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--domain",
        dest="domains",
        action="append",
        required=True,
        type=domain_spec,
        metavar="NAME[=CONCURRENCY]",
        help="a domain to serve, with its own concurrency (default --concurrency); "
        "repeat for several domains (each in its own processes)",
    )
    parser.add_argument(
        "--processes",
        type=int_range(1, MAX_PROCESSES),
        default=None,
        metavar="N",
        help="run and supervise N worker processes per domain: a crashed one is "
        "restarted; SIGTERM stops all gracefully, a second SIGTERM at once",
    )
    # Behind PgBouncer in transaction pooling (docs/operations.md, "PgBouncer").
    parser.add_argument(
        "--listen-dsn",
        default=None,
        metavar="DSN",
        help="LISTEN on a direct connection to PostgreSQL (not through PgBouncer)",
    )
    parser.add_argument(
        "--no-prepare",
        action="store_true",
        help="no server-side prepared statements (PgBouncer before 1.21)",
    )


@dataclass(frozen=True)
class Slot:
    """One supervised child: the domain it serves, its concurrency and its number."""

    domain: str
    concurrency: int
    index: int

    def env(self) -> str:
        return json.dumps(
            {"domain": self.domain, "concurrency": self.concurrency, "index": self.index}
        )


def slots(args: argparse.Namespace) -> list[Slot]:
    copies = args.processes or 1
    plan: list[Slot] = []
    seen: set[str] = set()
    for name, concurrency in args.domains:
        if name in seen:
            raise UsageError(f"--domain {name} is given twice")
        seen.add(name)
        for _ in range(copies):
            plan.append(Slot(name, concurrency or args.concurrency, len(plan)))
    return plan


def wanted(args: argparse.Namespace) -> bool:
    """Whether this command supervises children. If not, ``args.domain`` and
    ``args.concurrency`` are set for the one worker this process runs (a child's come
    from :data:`SLOT_ENV`)."""
    slot = os.environ.get(SLOT_ENV)
    if slot:
        given = json.loads(slot)
        args.domain, args.concurrency = given["domain"], given["concurrency"]
        if getattr(args, "metrics_port", None):
            args.metrics_port += given["index"]
        return False
    if args.processes is None and len(args.domains) == 1:
        args.domain, concurrency = args.domains[0]
        args.concurrency = concurrency or args.concurrency
        return False
    return True


def supervise(args: argparse.Namespace, check: Callable[[str, str], object]) -> int:
    """Check every domain has handlers (``check(app, domain)``), then run the children."""
    plan = slots(args)
    for domain in dict.fromkeys(slot.domain for slot in plan):
        check(args.app, domain)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    argv = list(getattr(args, "argv", None) or sys.argv[1:])
    command = [sys.executable, "-m", "commandbus", *argv]
    return Supervisor(plan, command).run()


class Supervisor:
    """Runs ``command`` once per slot (with :data:`SLOT_ENV` set) and keeps it running."""

    def __init__(
        self,
        plan: list[Slot],
        command: list[str],
        *,
        backoff_first: float = BACKOFF_FIRST_S,
        backoff_max: float = BACKOFF_MAX_S,
        force_grace: float = FORCE_GRACE_S,
    ) -> None:
        self.plan = plan
        self.command = command
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.force_grace = force_grace
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts = 0
        self._started_at: dict[int, float] = {}
        self._restart_at: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._signals: list[int] = []
        self._stopping = False
        self._forced_at: float | None = None
        self._killed: set[int] = set()  # pids sent SIGKILL
        self._unclean = False

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous_fd = signal.set_wakeup_fd(wake_w)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            log.info(
                "supervising %d worker processes (%s); stop with Ctrl-C or SIGTERM",
                len(self.plan),
                ", ".join(f"{s.domain}={s.concurrency}" for s in self.plan),
            )
            for slot in self.plan:
                self._start(slot)
            while self._step():
                select.select([wake_r], [], [], self._timeout())
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_r)
            os.close(wake_w)
            for child in self.children.values():  # only after an error of our own
                child.kill()
                child.wait()
        if self._forced_at is not None:
            return 130
        return 1 if self._unclean else 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _step(self) -> bool:
        """Handle signals, exits and due restarts; False once everything has stopped."""
        while self._signals:
            signum = self._signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._stop_signal(signum)
        now = time.monotonic()
        for index, child in list(self.children.items()):
            code = child.poll()
            if code is not None:
                del self.children[index]
                self._exited(self.plan[index], child.pid, code, now)
        if self._stopping:
            if not self.children:
                return False
            if self._forced_at is not None and now - self._forced_at > self.force_grace:
                for child in self.children.values():
                    if child.pid in self._killed:
                        continue  # SIGKILLed already: it is dying, once is enough
                    self._killed.add(child.pid)
                    log.warning("worker process %d did not stop: killing it", child.pid)
                    child.kill()
            return True
        for index, due in list(self._restart_at.items()):
            if due <= now:
                del self._restart_at[index]
                self.restarts += 1
                self._start(self.plan[index])
        return True

    def _timeout(self) -> float:
        """How long to wait for a signal: until the next restart, at most a second (an
        exit also wakes the loop, through SIGCHLD)."""
        if self._stopping or not self._restart_at:
            return 1.0
        return max(0.0, min(1.0, min(self._restart_at.values()) - time.monotonic()))

    def _stop_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self._stopping:
            self._stopping = True
            self._restart_at.clear()
            log.info("%s: stopping %d worker processes gracefully", name, len(self.children))
        elif self._forced_at is None:
            self._forced_at = time.monotonic()
            log.warning("second %s: worker processes cancel their in-flight handlers", name)
        else:
            return
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)

    def _exited(self, slot: Slot, pid: int, code: int, now: float) -> None:
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"
        if self._stopping:
            if code != 0:
                self._unclean = True
                log.warning("worker process %d (%s) %s while stopping", pid, slot.domain, how)
            return
        lived = now - self._started_at.get(slot.index, now)
        failures = 0 if lived >= STABLE_AFTER_S else self._failures.get(slot.index, 0)
        delay = min(self.backoff_max, self.backoff_first * 2**failures)
        self._failures[slot.index] = failures + 1
        self._restart_at[slot.index] = now + delay
        log.warning(
            "worker process %d (%s) %s after %.1f s; restarting it in %.1f s",
            pid,
            slot.domain,
            how,
            lived,
            delay,
        )

    def _start(self, slot: Slot) -> None:
        env = {**os.environ, SLOT_ENV: slot.env()}
        child = subprocess.Popen(self.command, env=env, **_own_group())
        self.children[slot.index] = child
        self._started_at[slot.index] = time.monotonic()
        log.info(
            "worker process %d started: domain %r, concurrency %d",
            child.pid,
            slot.domain,
            slot.concurrency,
        )


def _own_group() -> dict[str, Any]:
    """Popen arguments: a process group of its own (a terminal's Ctrl-C reaches the child
    once, through us) and, on Linux, SIGTERM when the supervisor dies."""
    if sys.platform != "linux":
        return {"process_group": 0} if hasattr(os, "setpgid") else {}

    def child_setup() -> None:
        os.setpgid(0, 0)
        with contextlib.suppress(Exception):  # best effort: the child works without it
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return {"preexec_fn": child_setup}
