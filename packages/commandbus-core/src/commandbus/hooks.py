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
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from commandbus._errors import ValidationError

__all__ = [
    "CommandSent",
    "Event",
    "HandlerFinished",
    "HandlerStarted",
    "Hook",
    "Hooks",
    "ReplyRouted",
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
    #: Seconds from the send (database clock) to this start (worker clock).
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
Hook: TypeAlias = Callable[[Any], Awaitable[object] | object]


class Hooks:
    """The hooks of one component; calling it with an event runs each of them."""

    __slots__ = ("_failed", "_hooks")

    def __init__(self, hooks: Iterable[Hook] | None = None) -> None:
        self._hooks: tuple[Hook, ...] = tuple(hooks or ())
        for hook in self._hooks:
            if not callable(hook):
                raise ValidationError("hooks", f"{hook!r} is not callable")
        self._failed: set[tuple[int, type]] = set()

    def __bool__(self) -> bool:
        return bool(self._hooks)

    @property
    def hooks(self) -> Sequence[Hook]:
        return self._hooks

    async def emit(self, event: Event) -> None:
        for hook in self._hooks:
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                key = (id(hook), type(event))
                if key not in self._failed:
                    self._failed.add(key)
                    log.exception(
                        "hook %r failed on %s (logged once; the work goes on)",
                        hook,
                        type(event).__name__,
                    )
