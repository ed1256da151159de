"""SyncTroubleshootingQueue on a real database: commands parked by a SyncWorker's plain-def
handler are listed, counted, retried, canceled and completed from blocking code, and the
core's errors surface unchanged."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandNotFoundError,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    InvalidOperationError,
    PermanentCommandError,
    ReplyOutcome,
    ReplyQueue,
    TroubleshootingQueue,
    ValidationError,
)
from commandbus_sync import SyncCommandBus, SyncRuntime, SyncTroubleshootingQueue, SyncWorker
from sync.helpers import wait_for_status

DOMAIN = "payments"
REPLIES = "ops-replies"


class Broken:
    """A plain-def handler that fails permanently until ``fixed`` is set."""

    def __init__(self) -> None:
        self.fixed = threading.Event()
        self.threads: list[str] = []

    def __call__(self, command: Command, ctx: HandlerContext) -> dict[str, Any]:
        self.threads.append(threading.current_thread().name)
        if not self.fixed.is_set():
            raise PermanentCommandError("BROKEN", f"cannot handle {command.data}")
        return {"fixed": True, "attempt": ctx.attempt}


@pytest.fixture
def handler() -> Broken:
    return Broken()


@pytest.fixture
def worker(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str, handler: Broken
) -> Iterator[SyncWorker]:
    registry = HandlerRegistry()
    registry.register(DOMAIN, "Pay", handler)
    worker = SyncWorker(
        pool=sync_pool,
        domain=DOMAIN,
        registry=registry,
        runtime=runtime,
        schema=schema,
        concurrency=2,
        poll_interval=0.05,
    )
    worker.run(block=False)
    try:
        yield worker
    finally:
        worker.stop(timeout=5)


@pytest.fixture
def tsq(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> SyncTroubleshootingQueue:
    return SyncTroubleshootingQueue(pool=sync_pool, runtime=runtime, schema=schema)


def park(bus: SyncCommandBus, n: int, **send: Any) -> list[uuid.UUID]:
    """Send ``n`` commands and wait until the (running) worker has parked them all."""
    ids = [uuid.uuid4() for _ in range(n)]
    for i, command_id in enumerate(ids):
        bus.send(DOMAIN, "Pay", command_id, {"n": i}, **send)
    for command_id in ids:
        wait_for_status(bus, DOMAIN, command_id, CommandStatus.IN_TROUBLESHOOTING_QUEUE)
    return ids


def test_operators_list_count_and_act_from_blocking_code(
    worker: SyncWorker,
    sync_bus: SyncCommandBus,
    tsq: SyncTroubleshootingQueue,
    handler: Broken,
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    schema: str,
) -> None:
    correlation_id = uuid.uuid4()
    retried, canceled, completed = park(
        sync_bus, 3, reply_to=REPLIES, correlation_id=correlation_id
    )
    assert all(name.startswith(f"commandbus-{DOMAIN}") for name in handler.threads)

    listed = tsq.list_troubleshooting(DOMAIN)
    assert {item.command_id for item in listed} == {retried, canceled, completed}
    parked_at = [item.updated_at for item in listed]
    assert parked_at == sorted(parked_at, reverse=True)  # latest parked first
    item = next(i for i in listed if i.command_id == retried)
    assert (item.domain, item.command_type, item.data) == (DOMAIN, "Pay", {"n": 0})
    assert (item.last_error_type, item.last_error_code) == ("PermanentCommandError", "BROKEN")
    assert (item.correlation_id, item.reply_to) == (correlation_id, REPLIES)
    page = tsq.list_troubleshooting(DOMAIN, limit=1, offset=1)
    assert [i.command_id for i in page] == [listed[1].command_id]
    assert {i.command_id for i in tsq.list_all_troubleshooting()} == {
        retried,
        canceled,
        completed,
    }
    assert tsq.count_troubleshooting() == 3
    assert tsq.count_troubleshooting(DOMAIN) == 3
    assert tsq.count_troubleshooting("elsewhere") == 0
    assert tsq.list_domains() == [DOMAIN]

    handler.fixed.set()
    tsq.operator_retry(DOMAIN, retried, operator="alice")
    done = wait_for_status(sync_bus, DOMAIN, retried, CommandStatus.COMPLETED)
    assert done.result == {"fixed": True, "attempt": 1}

    tsq.operator_cancel(DOMAIN, canceled, reason="customer withdrew", operator="bob")
    meta = sync_bus.get_command(DOMAIN, canceled)
    assert meta is not None and meta.status is CommandStatus.CANCELED

    tsq.operator_complete(DOMAIN, completed, result={"manual": True}, operator="carol")
    meta = sync_bus.get_command(DOMAIN, completed)
    assert meta is not None and meta.status is CommandStatus.COMPLETED
    assert meta.result == {"manual": True}

    assert tsq.count_troubleshooting() == 0
    assert tsq.list_troubleshooting(DOMAIN) == []
    assert tsq.list_domains() == []

    trails = {cid: sync_bus.get_audit_trail(cid) for cid in (retried, canceled, completed)}
    assert [e.event_type for e in trails[retried]] == [
        "SENT",
        "RECEIVED",
        "MOVED_TO_TROUBLESHOOTING_QUEUE",
        "OPERATOR_RETRY",
        "RECEIVED",
        "COMPLETED",
    ]
    assert trails[retried][3].details["operator"] == "alice"
    assert trails[canceled][-1].event_type == "OPERATOR_CANCEL"
    assert trails[canceled][-1].details == {"operator": "bob", "reason": "customer withdrew"}
    assert trails[completed][-1].event_type == "OPERATOR_COMPLETE"
    assert trails[completed][-1].details["operator"] == "carol"

    replies = runtime.run(ReplyQueue(sync_pool, REPLIES, schema=schema).read, 10)
    outcomes = {reply.command_id: reply.outcome for reply in replies}
    assert outcomes == {
        retried: ReplyOutcome.SUCCESS,
        canceled: ReplyOutcome.CANCELED,
        completed: ReplyOutcome.SUCCESS,
    }


def test_acting_on_a_command_that_is_not_parked_raises_the_cores_error(
    worker: SyncWorker,
    sync_bus: SyncCommandBus,
    tsq: SyncTroubleshootingQueue,
    handler: Broken,
    runtime: SyncRuntime,
) -> None:
    handler.fixed.set()
    done = uuid.uuid4()
    sync_bus.send(DOMAIN, "Pay", done, {})
    wait_for_status(sync_bus, DOMAIN, done, CommandStatus.COMPLETED)

    with pytest.raises(InvalidOperationError, match="not in the troubleshooting queue") as caught:
        tsq.operator_retry(DOMAIN, done)
    with pytest.raises(InvalidOperationError) as direct:  # the core, called on its loop
        runtime.run(tsq.queue.operator_retry, DOMAIN, done)
    assert type(caught.value) is type(direct.value)
    assert str(caught.value) == str(direct.value)
    with pytest.raises(InvalidOperationError, match="not in the troubleshooting queue"):
        tsq.operator_cancel(DOMAIN, done, reason="no")
    with pytest.raises(InvalidOperationError, match="not in the troubleshooting queue"):
        tsq.operator_complete(DOMAIN, done, result={"x": 1})

    unknown = uuid.uuid4()
    with pytest.raises(CommandNotFoundError) as not_found:
        tsq.operator_retry(DOMAIN, unknown)
    assert (not_found.value.domain, not_found.value.command_id) == (DOMAIN, unknown)

    meta = sync_bus.get_command(DOMAIN, done)
    assert meta is not None and meta.status is CommandStatus.COMPLETED
    assert [e.event_type for e in sync_bus.get_audit_trail(done)] == [
        "SENT",
        "RECEIVED",
        "COMPLETED",
    ]


def test_validation_errors_surface_unchanged_and_change_nothing(
    worker: SyncWorker, sync_bus: SyncCommandBus, tsq: SyncTroubleshootingQueue
) -> None:
    (parked,) = park(sync_bus, 1)
    with pytest.raises(ValidationError) as caught:
        tsq.operator_cancel(DOMAIN, parked, reason="   ")
    assert caught.value.field == "reason"
    with pytest.raises(ValidationError):
        tsq.operator_retry(DOMAIN, "not-a-uuid")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        tsq.list_troubleshooting(DOMAIN, limit=0)
    meta = sync_bus.get_command(DOMAIN, parked)
    assert meta is not None and meta.status is CommandStatus.IN_TROUBLESHOOTING_QUEUE
    assert tsq.count_troubleshooting(DOMAIN) == 1


# -- construction -------------------------------------------------------------------------


def test_built_from_a_queue_delegates_to_it(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> None:
    core = TroubleshootingQueue(sync_pool, schema=schema)
    sync = SyncTroubleshootingQueue(core, runtime=runtime)
    assert sync.queue is core
    assert sync.count_troubleshooting() == 0


def test_a_queue_and_a_pool_together_are_refused(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> None:
    core = TroubleshootingQueue(sync_pool, schema=schema)
    with pytest.raises(ValidationError) as caught:
        SyncTroubleshootingQueue(core, pool=sync_pool, runtime=runtime)
    assert caught.value.field == "tsq"
    with pytest.raises(ValidationError) as caught:
        SyncTroubleshootingQueue(runtime=runtime)  # nothing to build from
    assert caught.value.field == "tsq"


def test_schema_alongside_a_built_queue_is_refused(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> None:
    core = TroubleshootingQueue(sync_pool, schema=schema)
    with pytest.raises(ValidationError, match="taken from the given TroubleshootingQueue") as c:
        SyncTroubleshootingQueue(core, runtime=runtime, schema=schema)
    assert c.value.field == "schema"


def test_a_pool_of_another_runtime_is_refused(
    runtime: SyncRuntime, database_url: str, schema: str
) -> None:
    with SyncRuntime() as other:
        foreign = other.open_pool(database_url, min_size=1, max_size=2)
        with pytest.raises(ValidationError, match="another event loop"):
            SyncTroubleshootingQueue(TroubleshootingQueue(foreign, schema=schema), runtime=runtime)
        with pytest.raises(ValidationError, match="another event loop"):
            SyncTroubleshootingQueue(pool=foreign, runtime=runtime, schema=schema)


def test_built_from_conninfo_owns_and_closes_its_pool(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, database_url: str, schema: str
) -> None:
    with SyncTroubleshootingQueue(
        conninfo=database_url,
        runtime=runtime,
        schema=schema,
        pool_kwargs={"min_size": 1, "max_size": 2},
    ) as sync:
        assert sync.queue.schema == schema
        assert sync.count_troubleshooting() == 0
    assert sync.queue.pool.closed
    assert not sync_pool.closed
