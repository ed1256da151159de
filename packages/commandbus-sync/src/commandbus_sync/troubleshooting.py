"""SyncTroubleshootingQueue: the blocking twin of :class:`commandbus.TroubleshootingQueue`.

For operator tools and admin views in synchronous apps: same methods, arguments, results
and exceptions as the async queue, one thread crossing per call.
"""

from __future__ import annotations

from commandbus import TroubleshootingQueue
from commandbus_sync._facade import SchemaFacade, blocking

__all__ = ["SyncTroubleshootingQueue"]


class SyncTroubleshootingQueue(SchemaFacade):
    """Blocking :class:`TroubleshootingQueue`, built from a queue or its arguments::

    SyncTroubleshootingQueue(tsq, runtime=rt)
    SyncTroubleshootingQueue(pool=pool, runtime=rt, schema="app")
    SyncTroubleshootingQueue(conninfo="postgresql://...")
    """

    target_type = TroubleshootingQueue
    instance_name = "tsq"
    _target: TroubleshootingQueue

    @property
    def queue(self) -> TroubleshootingQueue:
        """The async queue every call is delegated to."""
        return self._target

    list_troubleshooting = blocking(TroubleshootingQueue.list_troubleshooting)
    list_all_troubleshooting = blocking(TroubleshootingQueue.list_all_troubleshooting)
    list_domains = blocking(TroubleshootingQueue.list_domains)
    count_troubleshooting = blocking(TroubleshootingQueue.count_troubleshooting)
    operator_retry = blocking(TroubleshootingQueue.operator_retry)
    operator_cancel = blocking(TroubleshootingQueue.operator_cancel)
    operator_complete = blocking(TroubleshootingQueue.operator_complete)
    retry_many = blocking(TroubleshootingQueue.retry_many)
    cancel_many = blocking(TroubleshootingQueue.cancel_many)
    complete_many = blocking(TroubleshootingQueue.complete_many)
    summary = blocking(TroubleshootingQueue.summary)
    find = blocking(TroubleshootingQueue.find)
    show = blocking(TroubleshootingQueue.show)
