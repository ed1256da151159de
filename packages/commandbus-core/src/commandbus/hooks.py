"""Hooks: callables that see what the bus, the worker and the reply router do.

A hook is any callable taking one event, plain or ``async``::

    def count(event: commandbus.hooks.Event) -> None:
        if isinstance(event, HandlerFinished) and event.outcome != "COMPLETED":
            statsd.increment(f"commands.{event.outcome.lower()}")

    worker = Worker(pool, domain="payments", registry=registry, hooks=[count])

Events are small frozen dataclasses, built only when a hook is registered (nothing is
spent without hooks). A hook runs on the event loop, after the fact (a send that was
committed, an outcome that was recorded): keep it quick, and hand slow work to a task or
a thread. A hook that raises is logged once per hook and event type and otherwise
ignored: observing must never break the work it observes. Metrics
(:mod:`commandbus.metrics`) are built on this seam.

A :class:`Middleware` is the other kind of hook: it *wraps* a send, a handler run or a
reply's routing, in the task (or thread) doing it, so it can make a context current for
the work and store headers with the commands sent. Tracing (:mod:`commandbus.otel`) is
built on it. Pass one in ``hooks=`` with the callables, or :func:`install` it for every
bus, worker and router of the process.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

from commandbus._errors import ValidationError
from commandbus.models import Command, Reply, SendRequest

__all__ = [
    "CommandSent",
    "Event",
    "HandlerFinished",
    "HandlerStarted",
    "Handling",
    "Hook",
    "Hooks",
    "Middleware",
    "ReplyRouted",
    "Routing",
    "Sending",
    "install",
    "uninstall",
]

log = logging.getLogger("commandbus.hooks")


@dataclass(frozen=True, slots=True)
class CommandSent:
    """A command was written (committed, or in the caller's open transaction)."""

    domain: str
    command_type: str
    command_id: uuid.UUID
    msg_id: int
    priority: int
    in_callers_transaction: bool


@dataclass(frozen=True, slots=True)
class HandlerStarted:
    """A worker is about to run a handler."""

    domain: str
    command_type: str
    command_id: uuid.UUID
    attempt: int
    worker: str
    #: Seconds from when the command last became deliverable to this start: from its
    #: send, or its scheduled time (``delay``), a retry's due time, an operator's retry
    #: or the expiry of a lease that ended without an outcome. Time spent waiting for a
    #: delay, a backoff or in the troubleshooting queue is not counted; time a paused
    #: domain held it is.
    waited: float


@dataclass(frozen=True, slots=True)
class HandlerFinished:
    """An attempt's outcome was recorded.

    ``outcome`` is the audit event it recorded: ``COMPLETED``, ``FAILED``,
    ``RETRY_SCHEDULED`` or ``MOVED_TO_TROUBLESHOOTING_QUEUE``.
    """

    domain: str
    command_type: str
    command_id: uuid.UUID
    attempt: int
    worker: str
    outcome: str
    #: Seconds the handler ran (0 when it never ran: no handler, attempts used up).
    duration: float
    error_type: str | None = None
    error_code: str | None = None
    #: Seconds until the retry, for ``RETRY_SCHEDULED``.
    retry_delay: float | None = None


@dataclass(frozen=True, slots=True)
class ReplyRouted:
    """A reply router applied (or parked) a reply."""

    reply_queue: str
    domain: str
    command_type: str
    command_id: uuid.UUID
    correlation_id: uuid.UUID | None
    #: What happened to it: ``applied``, ``ignored`` (stale or duplicate), ``retried``,
    #: ``parked`` or ``lease_lost``.
    result: str


Event: TypeAlias = CommandSent | HandlerStarted | HandlerFinished | ReplyRouted


@dataclass(slots=True)
class Sending:
    """A send about to be written (one statement, one or more commands)."""

    requests: Sequence[SendRequest]
    #: Headers to store with every command of this send (W3C trace context, say): a
    #: middleware fills them in when entered; the worker hands them back on
    #: ``Command.trace_context``, and the command's reply carries them on.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Handling:
    """A handler about to run; ``outcome`` and the error fields are filled in before the
    middleware's context exits (``outcome`` is an audit event type, as on
    :class:`HandlerFinished`; None if the run was interrupted, by a worker stop)."""

    command: Command
    attempt: int
    worker: str
    outcome: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(slots=True)
class Routing:
    """A reply about to be applied by a reply router; ``result`` (as on
    :class:`ReplyRouted`) is filled in before the middleware's context exits."""

    reply: Reply
    router: str
    result: str | None = None


class Middleware:
    """Base of hooks that wrap the work; override the methods you need.

    Each returns a context manager entered around that piece of work, in the task (or the
    handler's thread) that does it: a context made current there is seen by the work,
    by what it sends, and by a plain-``def`` handler's thread. A middleware that raises is
    logged once and bypassed; the work goes on.
    """

    def sending(self, send: Sending) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def handling(self, run: Handling) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def routing(self, run: Routing) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()


Hook: TypeAlias = Callable[[Any], Awaitable[object] | object] | Middleware

#: Middleware installed for the whole process (see :func:`install`).
_installed: tuple[Middleware, ...] = ()


def install(middleware: Middleware) -> None:
    """Wrap the work of every bus, worker and router of this process with ``middleware``
    (as if passed in each one's ``hooks=``), including those created already."""
    global _installed
    if not isinstance(middleware, Middleware):
        raise ValidationError("middleware", f"{middleware!r} is not a Middleware")
    if middleware not in _installed:
        _installed = (*_installed, middleware)


def uninstall(middleware: Middleware) -> None:
    """Undo :func:`install`; a middleware not installed is ignored."""
    global _installed
    _installed = tuple(m for m in _installed if m is not middleware)


class Hooks:
    """The hooks of one component; calling it with an event runs each of them."""

    __slots__ = ("_all", "_failed", "_hooks", "_middleware")

    def __init__(self, hooks: Iterable[Hook] | None = None) -> None:
        self._all: tuple[Hook, ...] = tuple(hooks or ())
        for hook in self._all:
            if not callable(hook) and not isinstance(hook, Middleware):
                raise ValidationError("hooks", f"{hook!r} is neither callable nor a Middleware")
        self._hooks = tuple(h for h in self._all if not isinstance(h, Middleware))
        self._middleware = tuple(h for h in self._all if isinstance(h, Middleware))
        self._failed: set[tuple[int, type]] = set()

    def __bool__(self) -> bool:
        """Whether any event hook is registered (events are built only then)."""
        return bool(self._hooks)

    @property
    def hooks(self) -> Sequence[Hook]:
        return self._all

    @property
    def wraps(self) -> bool:
        """Whether any middleware (own or installed) wraps the work."""
        return bool(self._middleware or _installed)

    def sending(self, send: Sending) -> contextlib.AbstractContextManager[None]:
        return _Around(self, "sending", send)

    def handling(self, run: Handling) -> contextlib.AbstractContextManager[None]:
        return _Around(self, "handling", run)

    def routing(self, run: Routing) -> contextlib.AbstractContextManager[None]:
        return _Around(self, "routing", run)

    def _log_once(self, hook: object, kind: type) -> None:
        key = (id(hook), kind)
        if key not in self._failed:
            self._failed.add(key)
            log.exception(
                "hook %r failed on %s (logged once; the work goes on)", hook, kind.__name__
            )

    async def emit(self, event: Event) -> None:
        """Run every hook on ``event``, awaiting those that return an awaitable."""
        pending = self.notify(event)
        if pending is not None:
            await pending

    def notify(self, event: Event) -> Awaitable[None] | None:
        """:meth:`emit` without a coroutine while every hook is plain (it runs per
        command): None when all ran, else what finishes the rest, to be awaited."""
        for index, hook in enumerate(self._hooks):
            try:
                result = hook(event)
            except Exception:
                self._log_once(hook, type(event))
                continue
            if inspect.isawaitable(result):
                return self._finish(event, result, index)
        return None

    async def _finish(self, event: Event, result: Awaitable[object], index: int) -> None:
        try:
            await result
        except Exception:
            self._log_once(self._hooks[index], type(event))
        for hook in self._hooks[index + 1 :]:
            try:
                returned = hook(event)
                if inspect.isawaitable(returned):
                    await returned
            except Exception:
                self._log_once(hook, type(event))


class _Around:
    """Each middleware's context around one piece of work (a class, not a generator: it
    runs per command). One that fails to enter is skipped, one that fails to exit is
    logged; none can swallow the work's own error."""

    __slots__ = ("_entered", "_hooks", "_method", "_work")

    def __init__(self, hooks: Hooks, method: str, work: Sending | Handling | Routing) -> None:
        self._hooks = hooks
        self._method = method
        self._work = work
        self._entered: list[tuple[Middleware, contextlib.AbstractContextManager[object]]] = []

    def __enter__(self) -> None:
        for middleware in (*self._hooks._middleware, *_installed):
            try:
                context = getattr(middleware, self._method)(self._work)
                context.__enter__()
            except Exception:
                self._hooks._log_once(middleware, type(self._work))
            else:
                self._entered.append((middleware, context))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for middleware, context in reversed(self._entered):
            try:
                context.__exit__(kind, error, tb)
            except Exception as failure:
                if failure is not error:
                    self._hooks._log_once(middleware, type(self._work))
