"""Running tasks in tests, without a worker process: :func:`run_tasks`.

    from commandbus_django.testing import run_tasks

    response = client.post("/orders/", {...})   # the view enqueued in its atomic() block
    (result,) = run_tasks()                     # ran with the workers' own code
    assert result.status == TaskResultStatus.SUCCESSFUL

Tasks are run by commandbus's worker code (``commandbus.testing.drain``) on connections
of their own, so they see what is committed: use ``TransactionTestCase`` (pytest-django:
``@pytest.mark.django_db(transaction=True)``). Under ``TestCase`` the test's transaction
never commits; :func:`run_tasks` then refuses with :class:`TasksNotCommitted` rather
than run nothing in silence. Every connection it opens is closed when it returns, so the
test database can be dropped at the end of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from commandbus import RetryPolicy
from commandbus_django._compat import task_backends
from commandbus_django._connection import conninfo
from commandbus_django._execution import TaskRegistry
from commandbus_django._handles import handles_for
from commandbus_django._uncommitted import TasksNotCommitted, refuse_uncommitted
from commandbus_sync import SyncCommandBus
from commandbus_sync.testing import drain

__all__ = ["TasksNotCommitted", "run_tasks"]


def run_tasks(
    *,
    backend: str = "default",
    queues: Sequence[str] | None = None,
    retries_at_once: bool = True,
    concurrency: int = 4,
    timeout: float = 30.0,
) -> list[Any]:
    """Run every task of ``backend`` due now (of ``queues``, default all of its queues),
    and the tasks they enqueue, to their outcome; their ``TaskResult``, in the order
    they first ran. ``retries_at_once``: a failed attempt is retried within the call
    (else it waits for the backend's backoff and is returned READY)."""
    target = task_backends[backend]
    settings = target.settings
    refuse_uncommitted(settings.database)
    served = list(queues) if queues is not None else sorted(target.queues)
    registry = TaskRegistry(target.alias, served, timeout=settings.timeout)
    policy = RetryPolicy(backoff=(0,) if retries_at_once else settings.backoff)
    runtime = handles_for(settings.database, settings.schema).runtime
    pool = runtime.open_pool(conninfo(settings.database), min_size=1, max_size=concurrency + 2)
    try:
        bus = SyncCommandBus(pool=pool, runtime=runtime, schema=settings.schema)
        ran = drain(registry, bus, retry_policy=policy, concurrency=concurrency, timeout=timeout)
    finally:
        runtime.run(pool.close)
    return [target.get_result(str(command.command_id)) for command in ran]
