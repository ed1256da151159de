"""Process managers (sagas): multi-step workflows driven by the replies to their commands.

Subclass :class:`BaseProcessManager`, start processes with ``await manager.start(data)``,
run a :class:`ProcessReplyRouter` on the managers' reply queue, and read processes with
:class:`ProcessRepository`. See docs/batches-and-processes.md.
"""

from commandbus.process.manager import BaseProcessManager
from commandbus.process.models import (
    ParkedReply,
    ProcessAuditEntry,
    ProcessCommand,
    ProcessInfo,
    ProcessStatus,
)
from commandbus.process.repository import ProcessRepository
from commandbus.process.router import ProcessReplyRouter

__all__ = [
    "BaseProcessManager",
    "ParkedReply",
    "ProcessAuditEntry",
    "ProcessCommand",
    "ProcessInfo",
    "ProcessReplyRouter",
    "ProcessRepository",
    "ProcessStatus",
]
