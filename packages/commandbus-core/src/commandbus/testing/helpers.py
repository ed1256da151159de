"""Helpers for testing handlers and the code that sends commands.

* :func:`wait_for_command`: wait until a command reaches a status; at the deadline (or
  when it settles on another final status) fail with its audit trail in the message.
* :func:`drain`: run everything due to completion with the worker's own code (lease,
  handler, retry rules, outcome recording), in this task, and return where each command
  ended up.
* :func:`make_context`: a real :class:`~commandbus.HandlerContext` for calling a handler
  directly in a unit test, without a worker.

The blocking twins for :class:`commandbus_sync.SyncCommandBus` are in
``commandbus_sync.testing``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from commandbus._errors import InvalidOperationError, ValidationError
from commandbus._validation import check_positive_seconds
from commandbus.bus import CommandBus
from commandbus.handlers import HandlerContext, HandlerRegistry
from commandbus.models import AuditEvent, CommandMetadata, CommandStatus
from commandbus.retry import RetryPolicy
from commandbus.worker import Worker

if TYPE_CHECKING:
    import psycopg
    from psycopg import AsyncConnection

    from commandbus._sync_handler_conn import SyncHandlerConnections

__all__ = [
    "FINAL_STATUSES",
    "CommandNotReachedError",
    "describe_command",
    "drain",
    "make_context",
    "wait_for_command",
]

#: Statuses a command does not leave without an operator.
FINAL_STATUSES = frozenset(
    {
        CommandStatus.COMPLETED,
        CommandStatus.FAILED,
        CommandStatus.CANCELED,
        CommandStatus.IN_TROUBLESHOOTING_QUEUE,
    }
)
#: How often :func:`wait_for_command` looks again.
_POLL_S = 0.02


class CommandNotReachedError(AssertionError):
    """A command did not reach the awaited status; the message holds its audit trail."""


def _statuses(status: CommandStatus | str | Iterable[CommandStatus | str]) -> set[CommandStatus]:
    items = [status] if isinstance(status, str) else list(status)
    try:
        return {CommandStatus(str(s)) for s in items}
    except ValueError:
        allowed = ", ".join(s.value for s in CommandStatus)
        raise ValidationError("status", f"{status!r} is not one of {allowed}") from None


def describe_command(
    domain: str,
    command_id: uuid.UUID,
    command: CommandMetadata | None,
    trail: Sequence[AuditEvent],
) -> str:
    """A command's state and audit trail as text (the body of a failed wait)."""
    if command is None:
        return f"command {command_id} in domain {domain!r} was never written (no row)"
    lines = [
        f"command {command_id} in domain {domain!r} ({command.command_type}) is "
        f"{command.status.value} after {command.attempts} of {command.max_attempts} attempts"
    ]
    if command.last_error_type or command.last_error_message:
        lines.append(
            f"last error: {command.last_error_type} [{command.last_error_code}] "
            f"{command.last_error_message}"
        )
    lines.append("audit trail:")
    for event in trail:
        details = f" {event.details}" if event.details else ""
        lines.append(f"  {event.created_at.isoformat()} {event.event_type}{details}")
    return "\n".join(lines)


async def wait_for_command(
    bus: CommandBus,
    domain: str,
    command_id: uuid.UUID,
    *,
    status: CommandStatus | str | Iterable[CommandStatus | str] = CommandStatus.COMPLETED,
    timeout: float = 10.0,
) -> CommandMetadata:
    """Return the command once its status is ``status`` (one status or several).

    Raises :class:`CommandNotReachedError`, with the command's state and audit trail in
    the message, when ``timeout`` seconds pass, or at once when the command settles on a
    final status that is not awaited (it would never change without an operator).
    """
    wanted = _statuses(status)
    timeout = check_positive_seconds("timeout", timeout)
    deadline = time.monotonic() + timeout
    while True:
        command = await bus.get_command(domain, command_id)
        if command is not None and command.status in wanted:
            return command
        settled = command is not None and command.status in FINAL_STATUSES
        if settled or time.monotonic() >= deadline:
            trail = await bus.get_audit_trail(command_id, domain=domain)
            why = "settled on another status" if settled else f"not within {timeout:g} s"
            expected = " or ".join(sorted(s.value for s in wanted))
            raise CommandNotReachedError(
                f"waited for {expected}: {why}\n"
                + describe_command(domain, command_id, command, trail)
            )
        await asyncio.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))


async def drain(
    target: Worker | Sequence[Worker] | HandlerRegistry,
    bus: CommandBus | None = None,
    *,
    retry_policy: RetryPolicy | None = None,
    concurrency: int = 10,
    timeout: float = 30.0,
) -> list[CommandMetadata]:
    """Run every due command to completion and return where each one ended up.

    ``target`` is a :class:`~commandbus.Worker` (its domain), several workers, or a
    :class:`~commandbus.HandlerRegistry` with the ``bus`` whose pool and schema to use
    (a worker per domain of the registry, ``retry_policy`` and ``concurrency`` as given).
    Each round leases what is due, up to the worker's concurrency at a time, runs the
    handlers and records their outcomes with the worker's own code; rounds go on until no
    domain has anything due, so commands the handlers send are run too. A retry scheduled
    for later is not waited for (its command is returned PENDING): give a
    ``RetryPolicy(backoff=(0,))`` to run retries within the drain.

    Returns the final :class:`~commandbus.CommandMetadata` of each command run, in the
    order they were first leased. Nothing runs in the background: no LISTEN, no
    registry entry, no pruner, no scheduler. ``timeout`` bounds the whole drain
    (TimeoutError; handlers still running are cancelled and their leases expire).
    """
    workers = _workers(target, bus, retry_policy, concurrency)
    timeout = check_positive_seconds("timeout", timeout)
    deadline = asyncio.get_running_loop().time() + timeout
    ran: dict[tuple[str, uuid.UUID], None] = {}
    for worker in workers:
        if worker.running:
            raise InvalidOperationError(
                f"worker for domain {worker.domain!r} is running: drain() runs handlers "
                "itself, with a worker that is not"
            )
    await _run_rounds(workers, ran, deadline)
    readers = {w.domain: CommandBus(w.pool, schema=w.schema) for w in workers}
    results: list[CommandMetadata] = []
    for domain, command_id in ran:
        command = await readers[domain].get_command(domain, command_id)
        if command is not None:  # (deleted by a handler of the test's own)
            results.append(command)
    return results


def _workers(
    target: Worker | Sequence[Worker] | HandlerRegistry,
    bus: CommandBus | None,
    retry_policy: RetryPolicy | None,
    concurrency: int,
) -> list[Worker]:
    if isinstance(target, Worker):
        return [target]
    if isinstance(target, HandlerRegistry):
        if bus is None:
            raise ValidationError("bus", "drain(registry, bus): the bus gives pool and schema")
        return [
            Worker(
                bus.pool,
                domain=domain,
                registry=target,
                concurrency=concurrency,
                retry_policy=retry_policy,
                use_notify=False,
                schema=bus.schema,
                retention=None,
            )
            for domain in sorted(target.domains())
        ]
    workers = list(target)
    if not workers or not all(isinstance(w, Worker) for w in workers):
        raise ValidationError(
            "target", "must be a Worker, a sequence of Workers, or a HandlerRegistry"
        )
    return workers


async def _run_rounds(
    workers: Sequence[Worker], ran: dict[tuple[str, uuid.UUID], None], deadline: float
) -> None:
    """Drain each worker in turn until none finds anything due (a handler of one domain
    may send commands to another)."""
    loop = asyncio.get_running_loop()
    progressed = True
    while progressed:
        progressed = False
        for worker in workers:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("drain: the deadline passed with commands still due")
            for command_id in await worker.drain(timeout=left):
                progressed = True
                ran.setdefault((worker.domain, command_id), None)


class _GivenConnection:
    """Lends the one connection a test gave :func:`make_context` as ``ctx.sync_conn``."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def lend(self) -> psycopg.Connection[Any]:
        return self._conn


def make_context(
    *,
    attempt: int = 1,
    max_attempts: int = 3,
    msg_id: int = 0,
    conn: AsyncConnection | None = None,
    sync_conn: psycopg.Connection[Any] | None = None,
    forgiven: int = 0,
    on_extend: Callable[[float], object] | None = None,
) -> HandlerContext:
    """A real :class:`~commandbus.HandlerContext` for calling a handler in a unit test.

    ``conn`` becomes ``ctx.conn`` (async handlers) and ``sync_conn`` ``ctx.sync_conn``
    (plain-``def`` handlers); their transactions are the test's to commit or roll back
    (a worker commits them with the outcome). ``ctx.is_last_attempt`` follows
    ``attempt``/``max_attempts``; ``ctx.extend_visibility(s)`` and its sync twin call
    ``on_extend(s)`` (if given) instead of touching a lease.
    """
    if not isinstance(attempt, int) or attempt < 1:
        raise ValidationError("attempt", f"must be a positive integer, got {attempt!r}")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValidationError("max_attempts", f"must be a positive integer, got {max_attempts!r}")

    def extended(seconds: float) -> None:
        seconds = check_positive_seconds("seconds", seconds)
        if on_extend is not None:
            on_extend(seconds)

    async def extend(seconds: float) -> None:
        extended(seconds)

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a sync test: no loop is needed, extend_visibility_sync is direct
        loop = cast(asyncio.AbstractEventLoop, None)
    ctx = HandlerContext(
        attempt=attempt,
        max_attempts=max_attempts,
        msg_id=msg_id,
        extend=extend,
        loop=loop,
        conn=conn,
        forgiven=forgiven,
        sync_conns=None
        if sync_conn is None
        else cast("SyncHandlerConnections", _GivenConnection(sync_conn)),
    )
    # No lease and perhaps no loop: the blocking twin records directly too.
    ctx.extend_visibility_sync = extended  # type: ignore[method-assign]
    return ctx
