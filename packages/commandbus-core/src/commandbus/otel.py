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

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
        self._tracer = trace.get_tracer(
            "commandbus", _version(), tracer_provider=tracer_provider
        )

    @contextmanager
    def sending(self, send: Sending) -> Iterator[None]:
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
        with self._tracer.start_as_current_span(
            f"send {first.domain}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            propagate.inject(send.headers)
            yield

    @contextmanager
    def handling(self, run: Handling) -> Iterator[None]:
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
        parent = propagate.extract(command.trace_context or {})
        with self._tracer.start_as_current_span(
            f"process {command.domain}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            yield
            if run.outcome is not None:
                span.set_attribute("commandbus.outcome", run.outcome)
            if run.outcome not in (None, "COMPLETED"):
                _failed(span, run)

    @contextmanager
    def routing(self, run: Routing) -> Iterator[None]:
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
        parent = propagate.extract(reply.trace_context or {})
        with self._tracer.start_as_current_span(
            f"process {reply.queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            yield
            if run.result is not None:
                span.set_attribute("commandbus.result", run.result)


def _failed(span: trace.Span, run: Handling) -> None:
    """A failed attempt: ERROR status and an ``exception`` event, as a raised error would
    give (the worker turns the handler's exception into an outcome, so none escapes)."""
    description = f"{run.error_type}: {run.error_message}" if run.error_type else run.outcome
    span.set_status(Status(StatusCode.ERROR, description))
    if run.error_type:
        span.add_event(
            "exception",
            {
                "exception.type": run.error_type,
                "exception.message": run.error_message or "",
            },
        )
    if run.error_code:
        span.set_attribute("error.type", run.error_code)


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
