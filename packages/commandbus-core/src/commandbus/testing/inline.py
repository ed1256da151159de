"""Inline mode for application tests: handlers run in the test's process, on the test's
database, as soon as the command sent is committed. Explicit, never a default::

    async with commandbus.testing.inline(bus, registry) as runner:
        await bus.send("orders", "Ship", order_id, {...})   # returns after Ship ran
        ...
        async with pool.connection() as conn:                # the outbox pattern:
            await bus.send("orders", "Ship", other_id, {...}, conn=conn)
        await runner.drain()                                 # runs it once committed

How it works: the runner adds a hook to ``bus``. A send on the bus's own pool is
committed when the hook sees it, and the runner then drains: it leases and runs what is
due with the worker's own code (:func:`commandbus.testing.drain`), so retries, the
troubleshooting queue, ``ctx.conn`` transactions and outcome recording are the real
ones. A send in the caller's transaction (``conn=...``) cannot be seen committing: it
runs on the next ``runner.drain()`` (or on the next send that drains).

Differences from a real worker (see docs/python-library-best-practices.md):

* ``send`` returns after the handlers ran (and those of what they sent, and so on); one
  drain runs at a time: a send from another task meanwhile returns at once, and the
  drain in progress runs its command too;
* only the domains of ``registry`` run, and only commands due now: a ``delay`` or a
  retry's backoff is not waited for (``RetryPolicy(backoff=(0,))`` retries at once);
* no LISTEN, no worker registry entry, no pruner, no scheduler, no reply router (a saga
  step's reply waits in its queue until a ``ProcessReplyRouter`` routes it);
* a failure of the runner itself (not of a handler: that is an outcome, as in a worker)
  is raised by the next ``drain()`` or when the ``inline`` block ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

from commandbus.bus import CommandBus
from commandbus.handlers import HandlerRegistry
from commandbus.hooks import CommandSent, Event, Hooks
from commandbus.models import CommandMetadata
from commandbus.retry import RetryPolicy
from commandbus.testing.helpers import drain
from commandbus.worker import Worker

__all__ = ["InlineRunner", "inline"]

log = logging.getLogger("commandbus.testing")


class InlineRunner:
    """Runs the handlers of ``registry`` for commands sent through ``bus``, in this
    process, right after each send commits. Use it as ``async with`` (or
    :func:`inline`); ``outcomes`` holds the final state of every command run so far."""

    def __init__(
        self,
        bus: CommandBus,
        registry: HandlerRegistry,
        *,
        retry_policy: RetryPolicy | None = None,
        concurrency: int = 10,
        timeout: float = 30.0,
    ) -> None:
        self.bus = bus
        self.registry = registry
        self.retry_policy = retry_policy
        self.concurrency = concurrency
        self.timeout = timeout
        #: Final state of each command run, in the order each drain returned them (a
        #: command run again, by a later retry, appears again).
        self.outcomes: list[CommandMetadata] = []
        self._workers: list[Worker] | None = None
        self._draining = False
        self._again = False
        self._error: BaseException | None = None
        self._saved: Hooks | None = None

    # -- installing --------------------------------------------------------------------

    def install(self) -> None:
        """Start running sent commands inline (``async with`` does this)."""
        if self._saved is not None:
            return
        self._saved = self.bus.hooks
        self.bus.hooks = Hooks((*self._saved.hooks, self._on_event))

    def uninstall(self) -> None:
        """Stop: the bus gets its hooks back."""
        if self._saved is not None:
            self.bus.hooks, self._saved = self._saved, None

    async def __aenter__(self) -> Self:
        self.install()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()
        if exc is None:
            self._raise_stored()

    # -- running -----------------------------------------------------------------------

    async def drain(self) -> list[CommandMetadata]:
        """Run everything due in the registry's domains to completion (what the handlers
        send too); returns the final state of each command this call ran."""
        self._raise_stored()
        if self._draining:
            return []  # called from a handler: the drain in progress runs it all
        self._draining = True
        ran: list[CommandMetadata] = []
        try:
            while True:
                self._again = False  # set by a send committed meanwhile (another task's)
                ran += await drain(self._get_workers(), timeout=self.timeout)
                if not self._again:
                    break
        finally:
            self._draining = False
        self.outcomes.extend(ran)
        return ran

    def _get_workers(self) -> list[Worker]:
        if self._workers is None:  # built on the loop that drains
            self._workers = [
                Worker(
                    self.bus.pool,
                    domain=domain,
                    registry=self.registry,
                    concurrency=self.concurrency,
                    retry_policy=self.retry_policy,
                    use_notify=False,
                    schema=self.bus.schema,
                    retention=None,
                )
                for domain in sorted(self.registry.domains())
            ]
        return self._workers

    async def _on_event(self, event: Event) -> None:
        if not isinstance(event, CommandSent) or event.in_callers_transaction:
            return  # not committed yet: runs on drain()
        if event.domain not in self.registry.domains():
            return
        if self._draining:  # the drain in progress runs it (another round if need be)
            self._again = True
            return
        try:
            await self.drain()
        except BaseException as exc:  # hooks swallow errors: keep it for the test
            log.exception("inline run after sending %s failed", event.command_id)
            if self._error is None:
                self._error = exc
            if not isinstance(exc, Exception):
                raise

    def _raise_stored(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


@asynccontextmanager
async def inline(
    bus: CommandBus,
    registry: HandlerRegistry,
    *,
    retry_policy: RetryPolicy | None = None,
    concurrency: int = 10,
    timeout: float = 30.0,
) -> AsyncIterator[InlineRunner]:
    """Run ``registry``'s handlers inline for commands sent through ``bus`` within the
    block (see :class:`InlineRunner` for how, and how it differs from a worker)."""
    async with InlineRunner(
        bus, registry, retry_policy=retry_policy, concurrency=concurrency, timeout=timeout
    ) as runner:
        yield runner
