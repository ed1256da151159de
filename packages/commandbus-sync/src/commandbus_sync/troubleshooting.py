"""SyncTroubleshootingQueue: the blocking twin of :class:`commandbus.TroubleshootingQueue`.

For operator tools and admin views in synchronous apps: same methods, arguments, results
and exceptions as the async queue, one thread crossing per call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commandbus import TroubleshootingQueue
from commandbus_sync._facade import Facade, blocking
from commandbus_sync.runtime import SyncRuntime, get_default_runtime

__all__ = ["SyncTroubleshootingQueue"]


class SyncTroubleshootingQueue(Facade):
    """Blocking :class:`TroubleshootingQueue`, built from a queue or its arguments::

    SyncTroubleshootingQueue(tsq, runtime=rt)
    SyncTroubleshootingQueue(pool=pool, runtime=rt, schema="app")
    SyncTroubleshootingQueue(conninfo="postgresql://...")
    """

    def __init__(
        self,
        tsq: TroubleshootingQueue | None = None,
        /,
        *,
        pool: AsyncConnectionPool | None = None,
        conninfo: str | None = None,
        runtime: SyncRuntime | None = None,
        schema: str | None = None,
        pool_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.runtime = runtime if runtime is not None else get_default_runtime()
        self._target = self._bind(
            TroubleshootingQueue,
            tsq,
            name="tsq",
            pool=pool,
            conninfo=conninfo,
            pool_kwargs=None if pool_kwargs is None else dict(pool_kwargs),
            build=TroubleshootingQueue,
            settings={"schema": schema},
        )

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
