"""Every error commandbus raises on purpose.

CommandBusError
├── ValidationError (also ValueError)   bad input, rejected before any write
├── DuplicateCommandError               (domain, command_id) already sent
├── CommandNotFoundError
├── BatchNotFoundError
├── ProcessNotFoundError
├── InvalidOperationError               operator action on a command in the wrong state
├── HandlerAlreadyRegisteredError
├── ConfigurationError                  e.g. a pool too small for a worker's concurrency
└── HandlerError                        raised by handlers to steer the outcome
    ├── TransientCommandError           retry with backoff
    ├── PermanentCommandError           straight to the troubleshooting queue
    └── BusinessRuleError               a legitimate "no": FAILED, no retry
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any


class CommandBusError(Exception):
    """Base of every error the library raises on purpose."""


class ValidationError(CommandBusError, ValueError):
    """Bad input; nothing was written. ``field`` names the offending argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DuplicateCommandError(CommandBusError):
    """A command with this ``(domain, command_id)`` exists already; nothing changed."""

    def __init__(
        self,
        domain: str,
        command_ids: Iterable[uuid.UUID],
        *,
        domains: Iterable[str] | None = None,
    ) -> None:
        self.domain = domain
        self.command_ids = list(command_ids)
        self.command_id = self.command_ids[0] if self.command_ids else None
        #: The domain of each id in ``command_ids`` (a batch may span domains).
        self.domains = [domain] * len(self.command_ids) if domains is None else list(domains)
        if len(set(self.domains)) > 1:
            keys = ", ".join(
                f"{d}/{c}" for d, c in zip(self.domains, self.command_ids, strict=True)
            )
            super().__init__(f"duplicate command id(s), as domain/id: {keys}")
        else:
            ids = ", ".join(str(c) for c in self.command_ids)
            super().__init__(f"duplicate command id(s) in domain {domain!r}: {ids}")


class CommandNotFoundError(CommandBusError):
    def __init__(self, domain: str, command_id: uuid.UUID) -> None:
        self.domain = domain
        self.command_id = command_id
        super().__init__(f"no command {command_id} in domain {domain!r}")


class BatchNotFoundError(CommandBusError):
    def __init__(self, domain: str, batch_id: uuid.UUID) -> None:
        self.domain = domain
        self.batch_id = batch_id
        super().__init__(f"no batch {batch_id} in domain {domain!r}")


class ProcessNotFoundError(CommandBusError):
    def __init__(self, process_id: uuid.UUID) -> None:
        self.process_id = process_id
        super().__init__(f"no process {process_id}")


class InvalidOperationError(CommandBusError):
    """The command is not in a state that allows this operation (or another operator won)."""


class HandlerAlreadyRegisteredError(CommandBusError):
    def __init__(self, domain: str, command_type: str) -> None:
        self.domain = domain
        self.command_type = command_type
        super().__init__(f"a handler for ({domain!r}, {command_type!r}) is registered already")


class ConfigurationError(CommandBusError):
    """The library was set up in a way that cannot work (e.g. a pool too small)."""


class HandlerError(CommandBusError):
    """Raised by a handler to choose the outcome of a command."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.details = dict(details) if details else {}


class TransientCommandError(HandlerError):
    """Temporary failure: retried with backoff, then the troubleshooting queue."""


class HandlerTimeoutError(TransientCommandError):
    """A handler ran over its timeout (``@registry.handler(..., timeout=)`` or the
    worker's ``handler_timeout``): a transient failure, retried like any other."""

    def __init__(self, seconds: float) -> None:
        super().__init__("HANDLER_TIMEOUT", f"the handler ran over its {seconds:g} s timeout")
        self.seconds = seconds


class PermanentCommandError(HandlerError):
    """Failure no retry will fix: straight to the troubleshooting queue."""


class BusinessRuleError(HandlerError):
    """The domain said no: status FAILED, reply FAILED, no retry, no troubleshooting."""
