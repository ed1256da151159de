"""Reaching the database: the DSN, a fast-failing first connection, and the pool."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from commandbus._liveness import with_liveness
from commandbus.cli._args import Run, UsageError

__all__ = ["CONNECT_TIMEOUT", "connect_kwargs", "open_pool", "resolve_dsn", "with_pool"]

#: Seconds to wait for a server before giving up (unless the DSN sets connect_timeout).
CONNECT_TIMEOUT = 5

#: A command that needs the database: it gets an open pool and the parsed arguments.
DbCommand = Callable[[AsyncConnectionPool, argparse.Namespace], Awaitable[None]]


def resolve_dsn(args: argparse.Namespace) -> str:
    dsn = args.dsn if args.dsn is not None else os.environ.get("DATABASE_URL")
    if not dsn:
        raise UsageError("no database given: pass --dsn or set DATABASE_URL")
    try:
        dsn.encode()
    except UnicodeEncodeError:  # bytes of no encoding in the argument or the variable
        raise UsageError("--dsn (or DATABASE_URL) is not UTF-8 text") from None
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"--dsn is not a valid connection string: {exc}") from None
    return dsn


def connect_kwargs(dsn: str) -> dict[str, Any]:
    """A short connect timeout, so that an unreachable host fails fast, and TCP settings
    under which a server gone silent is noticed (see commandbus._liveness)."""
    timeout = (
        {} if "connect_timeout" in conninfo_to_dict(dsn) else {"connect_timeout": CONNECT_TIMEOUT}
    )
    return with_liveness(dsn, timeout)


@asynccontextmanager
async def open_pool(
    args: argparse.Namespace, *, max_size: int = 2
) -> AsyncIterator[AsyncConnectionPool]:
    """An open pool on ``args.dsn``, closed at exit.

    One direct connection first: a pool retries failed connections quietly until its
    timeout, whereas a direct connection fails at once with libpq's reason.
    """
    dsn = resolve_dsn(args)
    kwargs = connect_kwargs(dsn)
    if getattr(args, "no_prepare", False):  # PgBouncer before 1.21: --no-prepare
        kwargs["prepare_threshold"] = None
    probe = await psycopg.AsyncConnection.connect(dsn, **kwargs)
    await probe.close()
    pool = AsyncConnectionPool(
        dsn,
        open=False,
        min_size=1,
        max_size=max_size,
        kwargs=kwargs,
        timeout=CONNECT_TIMEOUT * 2,
        name="commandbus-cli",
    )
    async with pool:
        yield pool


def with_pool(command: DbCommand) -> Run:
    """Run an async database command on a fresh event loop; exit status 0 when it returns."""

    def run(args: argparse.Namespace) -> int:
        async def main() -> None:
            async with open_pool(args) as pool:
                await command(pool, args)

        asyncio.run(main())
        return 0

    return run
