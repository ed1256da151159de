"""Handler registration and the context a handler receives.

A handler is ``async def h(command, ctx) -> dict | None`` or a plain ``def`` with the
same signature; plain functions run in the worker's bounded thread pool.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from psycopg import AsyncConnection

from commandbus._errors import ConfigurationError, HandlerAlreadyRegisteredError
from commandbus._validation import check_handler_timeout, check_name, check_positive_int
from commandbus.models import Command

if TYPE_CHECKING:
    import psycopg

    from commandbus._handler_conn import HandlerConnection
    from commandbus._sync_handler_conn import SyncHandlerConnections

__all__ = ["Handler", "HandlerContext", "HandlerRegistry", "handler"]

HandlerResult = dict[str, Any] | None
Handler = Callable[[Command, "HandlerContext"], Awaitable[HandlerResult] | HandlerResult]
F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__commandbus_handler__"


def handler(domain: str, command_type: str) -> Callable[[F], F]:
    """Mark a method as a handler; ``HandlerRegistry.register_instance(obj)`` finds it."""
    check_name("domain", domain)
    check_name("command_type", command_type)

    def mark(fn: F) -> F:
        setattr(fn, _MARK, (domain, command_type))
        return fn

    return mark


class HandlerRegistry:
    """Maps ``(domain, command_type)`` to exactly one handler."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._timeouts: dict[tuple[str, str], float] = {}
        self._max_running: dict[tuple[str, str], int] = {}

    def register(
        self,
        domain: str,
        command_type: str,
        fn: Handler,
        *,
        timeout: float | None = None,
        max_running: int | None = None,
    ) -> None:
        """Register ``fn``; ``timeout`` bounds each run in seconds (see :meth:`timeout`),
        ``max_running`` how many may run at once across all workers (see
        :meth:`max_running`)."""
        key = (check_name("domain", domain), check_name("command_type", command_type))
        if not callable(fn):
            raise ConfigurationError(f"handler for {key} is not callable: {fn!r}")
        seconds = None if timeout is None else check_handler_timeout("timeout", timeout)
        cap = None if max_running is None else check_positive_int("max_running", max_running)
        if key in self._handlers:
            raise HandlerAlreadyRegisteredError(*key)
        self._handlers[key] = fn
        if seconds is not None:
            self._timeouts[key] = seconds
        if cap is not None:
            self._max_running[key] = cap

    def handler(
        self,
        domain: str,
        command_type: str,
        *,
        timeout: float | None = None,
        max_running: int | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`register`."""

        def register(fn: F) -> F:
            self.register(domain, command_type, fn, timeout=timeout, max_running=max_running)
            return fn

        return register

    def max_running(self, domain: str) -> dict[str, int]:
        """The concurrency limits declared for ``domain``: command type -> most commands
        of that type running at once, across every worker process of the domain.

        Workers write them to the database when they start (the last deploy's figure
        wins) and lease with them: a type at its limit is not leased until one of its
        commands ends. Types without a limit cost nothing extra.
        """
        return {kind: cap for (d, kind), cap in self._max_running.items() if d == domain}

    def timeout(self, domain: str, command_type: str) -> float | None:
        """Seconds a run of this handler may take, if it was registered with a timeout.

        An async handler that runs over is cancelled (at its next await) and a plain
        ``def`` one abandoned to finish in its thread; either way the attempt is a
        transient failure (:class:`HandlerTimeoutError`), retried like any other.
        """
        return self._timeouts.get((domain, command_type))

    def register_instance(self, obj: object) -> list[tuple[str, str]]:
        """Register every method of ``obj`` marked with :func:`handler`; returns their keys.

        All or nothing: if any key is taken already, none of the methods is registered.
        """
        found: dict[tuple[str, str], Handler] = {}
        for name in dir(type(obj)):
            key = getattr(getattr(type(obj), name, None), _MARK, None)
            if key is not None:
                if key in self._handlers or key in found:
                    raise HandlerAlreadyRegisteredError(*key)
                found[key] = getattr(obj, name)
        for key, fn in found.items():
            self.register(key[0], key[1], fn)
        return list(found)

    def get(self, domain: str, command_type: str) -> Handler | None:
        return self._handlers.get((domain, command_type))

    def domains(self) -> set[str]:
        return {d for d, _ in self._handlers}

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)


def is_async_handler(fn: Handler) -> bool:
    target = getattr(fn, "__call__", fn) if not inspect.isroutine(fn) else fn  # noqa: B004
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(target)


class HandlerContext:
    """What a handler may use besides the command: attempt info, lease, and a transaction.

    ``ctx.conn`` (async handlers) is a pool connection taken at the handler's first
    statement on it. If the handler runs any, the command's outcome is recorded in that
    same transaction: its writes commit atomically with "completed", or roll back with a
    failure. Run statements on it directly or in ``ctx.conn.transaction()`` blocks
    (savepoints in the worker's transaction); do not ``commit()`` it: the worker ends the
    transaction. A handler runs once per attempt whether or not it uses ``ctx.conn``.
    ``ctx.sync_conn`` is the same for plain-``def`` handlers: a synchronous
    ``psycopg.Connection`` whose transaction commits with the outcome.
    """

    def __init__(
        self,
        *,
        attempt: int,
        max_attempts: int,
        msg_id: int,
        extend: Callable[[float], Coroutine[Any, Any, None]],
        loop: asyncio.AbstractEventLoop,
        conn: AsyncConnection | HandlerConnection | None = None,
        forgiven: int = 0,
        sync_conns: SyncHandlerConnections | None = None,
    ) -> None:
        self.attempt = attempt
        #: Earlier leases not counted against ``max_attempts`` (see docs/design.md).
        self.forgiven = forgiven
        self.max_attempts = max_attempts
        self.msg_id = msg_id
        self._extend = extend
        self._loop = loop
        self._conn = conn
        self._sync_conns = sync_conns
        #: The connection lent as ``ctx.sync_conn``, once the handler asked for it.
        self.lent_sync_conn: psycopg.Connection[Any] | None = None
        #: Set (operator, reason) when an operator cancels the command while it runs.
        self.cancel_request: dict[str, Any] | None = None
        #: The run went over its timeout (a plain handler's attempt is then recorded as
        #: failed without waiting for it).
        self.timed_out = False
        # Between a plain handler's thread and the worker: whoever takes it first decides
        # the attempt's outcome (the thread recording a success, or the loop a timeout).
        self.decided = threading.Lock()
        self.recording = False

    @property
    def cancel_requested(self) -> bool:
        """Whether the run should stop: canceled by an operator, or over its timeout. An
        async handler is cancelled at its next await anyway; a plain one should check it
        between steps and return."""
        return self.cancel_request is not None or self.timed_out

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt - self.forgiven >= self.max_attempts

    async def extend_visibility(self, seconds: float) -> None:
        """Keep the lease for ``seconds`` more from now (for long-running work)."""
        await self._extend(seconds)

    def extend_visibility_sync(self, seconds: float) -> None:
        """Blocking twin of :meth:`extend_visibility` for plain-``def`` handlers."""
        asyncio.run_coroutine_threadsafe(self._extend(seconds), self._loop).result()

    @property
    def conn(self) -> AsyncConnection:
        """The transaction shared with the outcome record (async handlers only).

        Taken from the pool at its first statement (see :meth:`connection`); it offers
        ``execute``, ``cursor``, ``transaction`` and ``pipeline`` as the connection does.
        """
        if self._conn is None:
            raise ConfigurationError(
                "ctx.conn is only available to async handlers: a plain-def handler runs in "
                "a thread and cannot use the worker's AsyncConnection; use ctx.sync_conn"
            )
        # A HandlerConnection stands in for the AsyncConnection (typed as one for callers).
        return cast("AsyncConnection", self._conn)

    async def connection(self) -> AsyncConnection:
        """The ``AsyncConnection`` of :attr:`conn` itself, taken from the pool now if the
        handler has not used it yet: for code that needs the real object (``isinstance``
        checks, ``psycopg.AsyncCursor(conn)``, reading ``conn.info`` first)."""
        conn = self._conn
        if conn is None or isinstance(conn, AsyncConnection):
            return self.conn  # the error for plain handlers, or the connection given
        return await conn.connection()

    @property
    def sync_conn(self) -> psycopg.Connection[Any]:
        """The transaction shared with the outcome record (plain-``def`` handlers only).

        Lent on first use, in the handler's thread. Run statements on it directly or in
        ``transaction()`` blocks; do not ``commit()`` it: the worker commits the handler's
        writes together with "completed" (or rolls them back with a failure).
        """
        if self._sync_conns is None:
            raise ConfigurationError(
                "ctx.sync_conn is only available to plain-def handlers: an async handler "
                "shares the worker's transaction through ctx.conn"
            )
        if self.lent_sync_conn is None:
            self.lent_sync_conn = self._sync_conns.lend()
        return self.lent_sync_conn
