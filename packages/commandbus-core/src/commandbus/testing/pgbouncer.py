"""A throwaway PgBouncer in front of a PostgreSQL server, for tests and benchmarks.

Transaction pooling by default (the mode that breaks session state: LISTEN, server-side
prepared statements before PgBouncer 1.21, session advisory locks), trust authentication,
a free port on 127.0.0.1. As root it runs as the ``postgres`` user (PgBouncer refuses
root). The Debian package is ``pgbouncer``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from commandbus.testing.postgres import _free_port

__all__ = ["PgBouncer", "PgBouncerNotAvailableError", "find_pgbouncer", "pgbouncer"]


class PgBouncerNotAvailableError(RuntimeError):
    """No ``pgbouncer`` binary, or it did not start."""


@dataclass(frozen=True)
class PgBouncer:
    #: The server's URL with host and port replaced by PgBouncer's.
    url: str
    #: ``pgbouncer --version``'s first line, e.g. "PgBouncer 1.18.0".
    version: str
    pool_mode: str


def find_pgbouncer() -> str | None:
    """The ``pgbouncer`` binary on PATH (or /usr/sbin, where Debian puts it), or None."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


@contextmanager
def pgbouncer(
    server_url: str,
    *,
    pool_mode: str = "transaction",
    pool_size: int = 20,
    max_client_conn: int = 1000,
    extra: dict[str, str] | None = None,
) -> Iterator[PgBouncer]:
    """Run PgBouncer in front of ``server_url`` (trust auth) for the block."""
    binary = find_pgbouncer()
    if binary is None:
        raise PgBouncerNotAvailableError("pgbouncer is not installed (apt install pgbouncer)")
    server = conninfo_to_dict(server_url)
    user = str(server.get("user") or "postgres")
    port = _free_port()
    base = tempfile.mkdtemp(prefix="commandbus-pgbouncer-")
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        import pwd

        account = pwd.getpwnam("postgres")
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": os.path.join(base, "userlist.txt"),
        "pool_mode": pool_mode,
        "default_pool_size": str(pool_size),
        "max_client_conn": str(max_client_conn),
        "ignore_startup_parameters": "extra_float_digits,options",
        "server_reset_query": "DISCARD ALL",
        "logfile": os.path.join(base, "pgbouncer.log"),
        "pidfile": os.path.join(base, "pgbouncer.pid"),
        **(extra or {}),
    }
    target = f"host={server.get('host', '127.0.0.1')} port={server.get('port', 5432)}"
    with open(os.path.join(base, "userlist.txt"), "w") as f:
        f.write(f'"{user}" ""\n')
    config = os.path.join(base, "pgbouncer.ini")
    with open(config, "w") as f:
        f.write(f"[databases]\n* = {target}\n\n[pgbouncer]\n")
        f.writelines(f"{key} = {value}\n" for key, value in settings.items())
    for name in ("userlist.txt", "pgbouncer.ini"):
        if run_as:
            os.chown(os.path.join(base, name), run_as["user"], run_as["group"])
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[:1]
    process = subprocess.Popen(
        [binary, config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **run_as,
    )
    try:
        _wait_listening(port, process, os.path.join(base, "pgbouncer.log"))
        params = {**server, "host": "127.0.0.1", "port": str(port)}
        yield PgBouncer(make_conninfo("", **params), version[0] if version else "", pool_mode)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(base, ignore_errors=True)


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = process.stderr.read().decode(errors="replace") if process.stderr else ""
            if os.path.exists(log):
                with open(log) as f:
                    detail += f.read()
            raise PgBouncerNotAvailableError(f"pgbouncer exited at start: {detail.strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)  # polling a port with a deadline, not synchronising on time
    raise PgBouncerNotAvailableError(f"pgbouncer did not listen on port {port} within 10 s")
