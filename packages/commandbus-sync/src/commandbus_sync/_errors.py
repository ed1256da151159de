"""Errors of the sync companion, both :class:`commandbus.CommandBusError` subclasses.

CommandBusError
├── RuntimeClosedError (also RuntimeError)   the runtime was shut down, its loop thread
│                                            is gone, or it belongs to a parent process
└── AsyncContextError (also RuntimeError)    a blocking call made where an event loop runs
"""

from __future__ import annotations

from commandbus import CommandBusError

__all__ = ["AsyncContextError", "RuntimeClosedError"]


class RuntimeClosedError(CommandBusError, RuntimeError):
    """The :class:`SyncRuntime` cannot run calls any more; the message says why and what to do."""


class AsyncContextError(CommandBusError, RuntimeError):
    """A blocking API was called from a thread running an event loop: it would stall or
    deadlock that loop. The message names the async API to await instead."""
