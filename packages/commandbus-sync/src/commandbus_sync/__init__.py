"""commandbus_sync: blocking facades over the async commandbus core.

For synchronous apps (Flask, Django, scripts): a :class:`SyncRuntime` runs the async core
on one event loop in a background thread, and the ``Sync*`` facades mirror the async API
method for method.
"""

from commandbus_sync._errors import AsyncContextError, RuntimeClosedError
from commandbus_sync.bus import SyncCommandBus
from commandbus_sync.config import configure
from commandbus_sync.health import check_health, list_workers, read_stats
from commandbus_sync.periodic import (
    SyncPruner,
    SyncScheduler,
    list_paused,
    list_schedules,
    pause_domain,
    resume_domain,
)
from commandbus_sync.process import (
    SyncProcessManager,
    SyncProcessReplyRouter,
    SyncProcessRepository,
)
from commandbus_sync.runtime import SyncRuntime
from commandbus_sync.troubleshooting import SyncTroubleshootingQueue
from commandbus_sync.worker import SyncWorker

__all__ = [
    "AsyncContextError",
    "RuntimeClosedError",
    "SyncCommandBus",
    "SyncProcessManager",
    "SyncProcessReplyRouter",
    "SyncProcessRepository",
    "SyncPruner",
    "SyncRuntime",
    "SyncScheduler",
    "SyncTroubleshootingQueue",
    "SyncWorker",
    "check_health",
    "configure",
    "list_paused",
    "list_schedules",
    "list_workers",
    "pause_domain",
    "read_stats",
    "resume_domain",
]
