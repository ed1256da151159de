"""Blocking twins of :mod:`commandbus.testing` for tests of sync apps (Flask, Django).

Each runs the core helper on the bus's (or worker's) :class:`SyncRuntime`:

* :func:`wait_for_command` (``SyncCommandBus``), :func:`drain` (a ``SyncWorker``, or a
  ``HandlerRegistry`` with a ``SyncCommandBus``);
* :func:`inline` / :class:`SyncInlineRunner`: the core's inline mode for a
  ``SyncCommandBus``: ``bus.send(...)`` on the bus's pool returns after the handlers
  ran; a command sent on the app's own connection (``conn=connection.connection``) runs
  on ``runner.drain()`` once the app committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from commandbus import (
    CommandMetadata,
    CommandStatus,
    HandlerRegistry,
    RetryPolicy,
    ValidationError,
)
from commandbus import testing as core
from commandbus_sync.bus import SyncCommandBus
from commandbus_sync.worker import SyncWorker

__all__ = ["SyncInlineRunner", "drain", "inline", "wait_for_command"]


def wait_for_command(
    bus: SyncCommandBus,
    domain: str,
    command_id: uuid.UUID,
    *,
    status: CommandStatus | str | Iterable[CommandStatus | str] = CommandStatus.COMPLETED,
    timeout: float = 10.0,
) -> CommandMetadata:
    """Blocking :func:`commandbus.testing.wait_for_command`."""
    return bus.runtime.run(
        core.wait_for_command, bus.bus, domain, command_id, status=status, timeout=timeout
    )


def drain(
    target: SyncWorker | Sequence[SyncWorker] | HandlerRegistry,
    bus: SyncCommandBus | None = None,
    *,
    retry_policy: RetryPolicy | None = None,
    concurrency: int = 10,
    timeout: float = 30.0,
) -> list[CommandMetadata]:
    """Blocking :func:`commandbus.testing.drain`: a stopped ``SyncWorker`` (or several on
    one runtime), or a ``HandlerRegistry`` with the ``SyncCommandBus`` to use."""
    if isinstance(target, HandlerRegistry):
        if bus is None:
            raise ValidationError("bus", "drain(registry, bus): the bus gives the pool")
        return bus.runtime.run(
            core.drain,
            target,
            bus.bus,
            retry_policy=retry_policy,
            concurrency=concurrency,
            timeout=timeout,
        )
    facades = [target] if isinstance(target, SyncWorker) else list(target)
    if not facades or not all(isinstance(f, SyncWorker) for f in facades):
        raise ValidationError(
            "target", "must be a SyncWorker, a sequence of them, or a HandlerRegistry"
        )
    return facades[0].runtime.run(core.drain, [f.worker for f in facades], timeout=timeout)


class SyncInlineRunner:
    """Blocking :class:`commandbus.testing.InlineRunner` for a ``SyncCommandBus``."""

    def __init__(
        self,
        bus: SyncCommandBus,
        registry: HandlerRegistry,
        *,
        retry_policy: RetryPolicy | None = None,
        concurrency: int = 10,
        timeout: float = 30.0,
    ) -> None:
        self.bus = bus
        self.runner = core.InlineRunner(
            bus.bus,
            registry,
            retry_policy=retry_policy,
            concurrency=concurrency,
            timeout=timeout,
        )

    @property
    def outcomes(self) -> list[CommandMetadata]:
        """Final state of each command run so far (see ``InlineRunner.outcomes``)."""
        return self.runner.outcomes

    def drain(self) -> list[CommandMetadata]:
        """Run everything due now (what was sent on the app's committed transactions
        included); the final state of each command this call ran."""
        return self.bus.runtime.run(self.runner.drain)

    def __enter__(self) -> Self:
        self.runner.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bus.runtime.run(self.runner.__aexit__, exc_type, exc, tb)


@contextmanager
def inline(
    bus: SyncCommandBus,
    registry: HandlerRegistry,
    *,
    retry_policy: RetryPolicy | None = None,
    concurrency: int = 10,
    timeout: float = 30.0,
) -> Iterator[SyncInlineRunner]:
    """Run ``registry``'s handlers inline for commands sent through ``bus`` (blocking
    twin of :func:`commandbus.testing.inline`)."""
    with SyncInlineRunner(
        bus, registry, retry_policy=retry_policy, concurrency=concurrency, timeout=timeout
    ) as runner:
        yield runner
