"""commandbus: a durable command bus for Python on PostgreSQL.

The async API lives here. The blocking facades of the ``commandbus-sync``
distribution are re-exported lazily (``from commandbus import SyncCommandBus``):
importing ``commandbus`` never imports ``commandbus_sync`` or anyio, nor starts a thread.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from commandbus._errors import (
    BatchNotFoundError,
    BusinessRuleError,
    CommandBusError,
    CommandNotFoundError,
    ConfigurationError,
    DuplicateCommandError,
    HandlerAlreadyRegisteredError,
    HandlerError,
    HandlerTimeoutError,
    InvalidOperationError,
    PermanentCommandError,
    ProcessNotFoundError,
    TransientCommandError,
    ValidationError,
)
from commandbus._registry import list_workers
from commandbus.bus import CommandBus
from commandbus.domains import PausedDomain, list_paused, pause_domain, resume_domain
from commandbus.handlers import HandlerContext, HandlerRegistry, handler
from commandbus.health import check_health
from commandbus.migrations import migrate, migration_sql
from commandbus.models import (
    AuditEvent,
    BatchCommand,
    BatchInfo,
    BatchResult,
    BatchStatus,
    Command,
    CommandMetadata,
    CommandStatus,
    HealthCheck,
    HealthReport,
    Reply,
    ReplyOutcome,
    SendRequest,
    SendResult,
    TroubleshootingItem,
    WorkerInfo,
)
from commandbus.process import (
    BaseProcessManager,
    ParkedReply,
    ProcessAuditEntry,
    ProcessCommand,
    ProcessInfo,
    ProcessReplyRouter,
    ProcessRepository,
    ProcessStatus,
)
from commandbus.pruner import Pruner, PruneResult, Retention
from commandbus.replies import ReplyQueue, read_replies
from commandbus.retry import RetryPolicy
from commandbus.schedules import (
    Schedule,
    ScheduledSend,
    Scheduler,
    ScheduleState,
    list_schedules,
)
from commandbus.troubleshooting import (
    BulkResult,
    ErrorGroup,
    TroubleshootingCursor,
    TroubleshootingDetail,
    TroubleshootingFilter,
    TroubleshootingPage,
    TroubleshootingQueue,
)
from commandbus.worker import Worker

if TYPE_CHECKING:  # pragma: no cover - lets type checkers and IDEs see the lazy names
    from commandbus_sync import (  # noqa: F401 - re-exported lazily by __getattr__
        AsyncContextError,
        RuntimeClosedError,
        SyncCommandBus,
        SyncProcessManager,
        SyncProcessReplyRouter,
        SyncProcessRepository,
        SyncRuntime,
        SyncTroubleshootingQueue,
        SyncWorker,
        configure,
    )

__version__ = "0.1.0"

#: Names resolved on first use from the optional ``commandbus-sync`` distribution.
_SYNC_NAMES = (
    "SyncRuntime",
    "SyncCommandBus",
    "SyncWorker",
    "SyncTroubleshootingQueue",
    "SyncProcessReplyRouter",
    "SyncProcessManager",
    "SyncProcessRepository",
    "configure",
    "RuntimeClosedError",
    "AsyncContextError",
)

_SYNC_MISSING = (
    "{name} is part of the synchronous companion, which is not installed. "
    'Install it with: pip install "commandbus[sync]"'
)

__all__ = [
    "AuditEvent",
    "BaseProcessManager",
    "BatchCommand",
    "BatchInfo",
    "BatchNotFoundError",
    "BatchResult",
    "BatchStatus",
    "BulkResult",
    "BusinessRuleError",
    "Command",
    "CommandBus",
    "CommandBusError",
    "CommandMetadata",
    "CommandNotFoundError",
    "CommandStatus",
    "ConfigurationError",
    "DuplicateCommandError",
    "ErrorGroup",
    "HandlerAlreadyRegisteredError",
    "HandlerContext",
    "HandlerRegistry",
    "HandlerError",
    "HandlerTimeoutError",
    "HealthCheck",
    "HealthReport",
    "InvalidOperationError",
    "ParkedReply",
    "PausedDomain",
    "PermanentCommandError",
    "ProcessAuditEntry",
    "ProcessCommand",
    "ProcessInfo",
    "ProcessNotFoundError",
    "ProcessReplyRouter",
    "ProcessRepository",
    "ProcessStatus",
    "PruneResult",
    "Pruner",
    "Reply",
    "ReplyOutcome",
    "ReplyQueue",
    "Retention",
    "RetryPolicy",
    "Schedule",
    "ScheduleState",
    "ScheduledSend",
    "Scheduler",
    "SendRequest",
    "SendResult",
    "TransientCommandError",
    "TroubleshootingCursor",
    "TroubleshootingDetail",
    "TroubleshootingFilter",
    "TroubleshootingItem",
    "TroubleshootingPage",
    "TroubleshootingQueue",
    "ValidationError",
    "Worker",
    "WorkerInfo",
    "check_health",
    "handler",
    "list_paused",
    "list_schedules",
    "list_workers",
    "migrate",
    "read_replies",
    "migration_sql",
    "pause_domain",
    "resume_domain",
]
# Lazy names are listed only when the companion is installed, so that
# ``from commandbus import *`` works without it (find_spec does not import it).


def _sync_installed() -> bool:
    try:
        return importlib.util.find_spec("commandbus_sync") is not None
    except (ImportError, ValueError):
        return False


if _sync_installed():
    __all__ += _SYNC_NAMES


def _load_sync() -> Any:
    try:
        return importlib.import_module("commandbus_sync")
    except ModuleNotFoundError as exc:
        if exc.name not in ("commandbus_sync", "anyio"):
            raise
        raise ImportError(_SYNC_MISSING.format(name="commandbus.sync"), name=exc.name) from exc


def __getattr__(name: str) -> Any:
    if name in _SYNC_NAMES:
        try:
            module = _load_sync()
        except ImportError as exc:
            raise ImportError(_SYNC_MISSING.format(name=name), name="commandbus_sync") from exc
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name == "sync":
        return importlib.import_module("commandbus.sync")
    raise AttributeError(f"module 'commandbus' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
