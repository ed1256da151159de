"""OpenTelemetry tracing: one trace from a send through its handler, its reply and the
saga's next command, across processes (extra ``commandbus[otel]``, ``opentelemetry-api``
only; bring your own SDK and exporter).

::

    import commandbus.otel

    commandbus.otel.instrument()          # every bus, worker and router of this process
    # or per component: CommandBus(pool, hooks=[commandbus.otel.Tracing()])

What is traced, with the messaging semantic conventions (``messaging.*``):

* ``send {domain}`` (PRODUCER), around each send statement, a child of whatever span is
  current (an HTTP request's, a handler's). Its W3C trace context (``traceparent``,
  ``tracestate``) is stored with every command of the send.
* ``process {domain}`` (CONSUMER), around each handler run, a child of the send span,
  current while the handler runs (a plain ``def`` one in its thread too), so what the
  handler does (HTTP calls, SQL, commands it sends) joins the trace. A failed attempt
  sets the span's status to ERROR with the error's type and message.
* ``process {reply_queue}`` (CONSUMER), around each reply a process router applies, a
  child of the send span of the command it answers (the reply carries that context), so
  the saga's next command, sent inside it, continues the same trace.

Nothing is stored when tracing is off, and ``import commandbus`` never imports
OpenTelemetry: this module does, when imported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import Token
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from commandbus import hooks
from commandbus.hooks import Handling, Middleware, Routing, Sending

__all__ = ["SYSTEM", "Tracing", "instrument", "uninstrument"]

#: The ``messaging.system`` attribute of every span.
SYSTEM = "commandbus"

_installed: Tracing | None = None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("commandbus-core")
    except PackageNotFoundError:  # pragma: no cover - a source checkout
        return "0"


class Tracing(Middleware):
    """The tracing middleware; pass it in ``hooks=``, or :func:`instrument` the process.

    ``tracer_provider`` defaults to the global one (``trace.set_tracer_provider``).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("commandbus", _version(), tracer_provider=tracer_provider)

    def sending(self, send: Sending) -> _SpanScope:
        requests = send.requests
        first = requests[0]
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.destination.name": first.domain,
        }
        if len(requests) == 1:
            attributes["messaging.message.id"] = str(first.command_id)
            attributes["commandbus.command_type"] = first.command_type
            if first.correlation_id is not None:
                attributes["messaging.message.conversation_id"] = str(first.correlation_id)
        else:
            attributes["messaging.batch.message_count"] = len(requests)
        span = self._tracer.start_span(
            f"send {first.domain}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        scope = _SpanScope(span)
        propagate.inject(send.headers, context=scope.context)
        return scope

    def handling(self, run: Handling) -> _SpanScope:
        command = run.command
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": command.domain,
            "messaging.message.id": str(command.command_id),
            "messaging.client.id": run.worker,
            "commandbus.command_type": command.command_type,
            "commandbus.attempt": run.attempt,
        }
        if command.correlation_id is not None:
            attributes["messaging.message.conversation_id"] = str(command.correlation_id)
        span = self._tracer.start_span(
            f"process {command.domain}",
            context=_extract(command.trace_context),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        return _SpanScope(span, functools.partial(_handled, run))

    def routing(self, run: Routing) -> _SpanScope:
        reply = run.reply
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": reply.queue,
            "messaging.message.id": str(reply.command_id),
            "messaging.client.id": run.router,
            "commandbus.command_type": reply.command_type,
            "commandbus.reply_outcome": reply.outcome.value,
        }
        if reply.correlation_id is not None:
            attributes["messaging.message.conversation_id"] = str(reply.correlation_id)
        span = self._tracer.start_span(
            f"process {reply.queue}",
            context=_extract(reply.trace_context),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        return _SpanScope(span, functools.partial(_routed, run))


class _SpanScope:
    """A span made current for the work and ended after it; ``finish`` adds what only
    the end tells (the outcome). A class rather than ``start_as_current_span``: it runs
    per command, and each layer of generator context managers costs."""

    __slots__ = ("_finish", "_token", "context", "span")

    def __init__(
        self, span: trace.Span, finish: Callable[[trace.Span], None] | None = None
    ) -> None:
        self.span = span
        self.context = trace.set_span_in_context(span)
        self._finish = finish
        self._token: Token[otel_context.Context] | None = None

    def __enter__(self) -> trace.Span:
        self._token = otel_context.attach(self.context)
        return self.span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if error is not None:
                self.span.record_exception(error)
                self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            elif self._finish is not None:
                self._finish(self.span)
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
            self.span.end()


def _extract(carrier: dict[str, str] | None) -> otel_context.Context | None:
    """The sender's context from stored headers; None (a new trace) without them."""
    return propagate.extract(carrier) if carrier else None


def _handled(run: Handling, span: trace.Span) -> None:
    if run.outcome is None:
        return
    span.set_attribute("commandbus.outcome", run.outcome)
    if run.outcome == "COMPLETED":
        return
    # A failed attempt: ERROR status and an ``exception`` event, as a raised error would
    # give (the worker turns the handler's exception into an outcome, so none escapes).
    description = f"{run.error_type}: {run.error_message}" if run.error_type else run.outcome
    span.set_status(Status(StatusCode.ERROR, description))
    if run.error_type:
        span.add_event(
            "exception",
            {"exception.type": run.error_type, "exception.message": run.error_message or ""},
        )
    if run.error_code:
        span.set_attribute("error.type", run.error_code)


def _routed(run: Routing, span: trace.Span) -> None:
    if run.result is not None:
        span.set_attribute("commandbus.result", run.result)


def instrument(tracer_provider: trace.TracerProvider | None = None) -> Tracing:
    """Trace every bus, worker and router of this process (existing ones too); calling it
    again replaces the earlier tracing. Returns the installed middleware."""
    global _installed
    uninstrument()
    _installed = Tracing(tracer_provider)
    hooks.install(_installed)
    return _installed


def uninstrument() -> None:
    """Stop what :func:`instrument` started."""
    global _installed
    if _installed is not None:
        hooks.uninstall(_installed)
        _installed = None
