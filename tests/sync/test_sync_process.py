"""Process managers from blocking code: a SyncWorker runs plain-def step handlers, a
SyncProcessReplyRouter applies the replies, SyncProcessRepository reads the outcome;
SyncProcessManager.start and SyncCommandBus.create_batch join the caller's psycopg
transaction (outbox)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BatchCommand,
    BatchInfo,
    BatchStatus,
    BusinessRuleError,
    Command,
    CommandBus,
    CommandStatus,
    ConfigurationError,
    DuplicateCommandError,
    HandlerContext,
    HandlerRegistry,
    InvalidOperationError,
    ProcessInfo,
    ProcessReplyRouter,
    ProcessStatus,
    ReplyOutcome,
    ValidationError,
)
from commandbus_sync import (
    SyncCommandBus,
    SyncProcessManager,
    SyncProcessReplyRouter,
    SyncProcessRepository,
    SyncRuntime,
    SyncWorker,
)
from core._sagas import COMMAND_TYPES, REPLY_QUEUE, SAGA_DOMAIN, OrderSaga, OrderState, Step
from sync.helpers import BlockingRun, wait_for_status, wait_until

#: What a handler does for (command_type, order_id) besides succeeding: raise, say.
Script = dict[tuple[str, str], Callable[[Command], None]]


class Handlers:
    """Plain-def handlers of the saga's commands; they record (command type, order, thread)."""

    def __init__(self) -> None:
        self.script: Script = {}
        self.calls: list[tuple[str, str]] = []
        self.threads: set[str] = set()
        self.registry = HandlerRegistry()
        for command_type in COMMAND_TYPES.values():
            self.registry.register(SAGA_DOMAIN, command_type, self._handler(command_type))

    def _handler(self, command_type: str) -> Callable[[Command, HandlerContext], dict[str, Any]]:
        def handle(command: Command, ctx: HandlerContext) -> dict[str, Any]:
            order_id = command.data["order_id"]
            self.calls.append((command_type, order_id))
            self.threads.add(threading.current_thread().name)
            action = self.script.get((command_type, order_id))
            if action is not None:
                action(command)
            return {
                "reservation": f"res-{order_id}",
                "charge_id": f"ch-{order_id}",
                "tracking": f"trk-{order_id}",
            }

        return handle


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
def saga(sync_bus: SyncCommandBus) -> OrderSaga:
    return OrderSaga(sync_bus.bus)


@pytest.fixture
def manager(saga: OrderSaga, runtime: SyncRuntime) -> SyncProcessManager:
    return SyncProcessManager(saga, runtime=runtime)


@pytest.fixture
def repo(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str
) -> SyncProcessRepository:
    return SyncProcessRepository(pool=sync_pool, runtime=runtime, schema=schema)


@pytest.fixture
def worker(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str, handlers: Handlers
) -> Iterator[SyncWorker]:
    worker = SyncWorker(
        pool=sync_pool,
        domain=SAGA_DOMAIN,
        registry=handlers.registry,
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
def router(
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    schema: str,
    manager: SyncProcessManager,
) -> Iterator[SyncProcessReplyRouter]:
    """A router (not started) for the saga; stopped at the end whatever the test did."""
    router = SyncProcessReplyRouter(
        pool=sync_pool,
        reply_queue=REPLY_QUEUE,
        managers=[manager],
        runtime=runtime,
        schema=schema,
        concurrency=2,
        poll_interval=0.05,
    )
    try:
        yield router
    finally:
        router.stop(timeout=5)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url) as c:
        yield c


def wait_for_process(
    repo: SyncProcessRepository, process_id: uuid.UUID, status: ProcessStatus
) -> ProcessInfo:
    def probe() -> ProcessInfo | None:
        info = repo.get(process_id)
        return info if info is not None and info.status is status else None

    info = wait_until(probe, timeout=15, what=f"process {process_id} {status}")
    assert info is not None
    return info


def loop_thread_name(runtime: SyncRuntime) -> str:
    async def name() -> str:
        return threading.current_thread().name

    return runtime.run(name)


def state_of(saga: OrderSaga, info: ProcessInfo) -> OrderState:
    return saga.state_from_dict(info.state)


# -- end to end ---------------------------------------------------------------------------


def test_three_step_process_completes_from_blocking_code(
    worker: SyncWorker,
    router: SyncProcessReplyRouter,
    manager: SyncProcessManager,
    repo: SyncProcessRepository,
    saga: OrderSaga,
    sync_bus: SyncCommandBus,
    handlers: Handlers,
) -> None:
    router.run(block=False)
    process_id = manager.start({"order_id": "o-1", "amount": 250})
    info = wait_for_process(repo, process_id, ProcessStatus.COMPLETED)

    state = state_of(saga, info)
    assert (state.reservation, state.charge_id, state.tracking) == ("res-o-1", "ch-o-1", "trk-o-1")
    assert state.log == ["RESERVE:SUCCESS", "CHARGE:SUCCESS", "SHIP:SUCCESS"]
    assert info.completed_steps == ["RESERVE", "CHARGE", "SHIP"]
    assert (info.domain, info.process_type) == (SAGA_DOMAIN, "order_fulfilment")
    assert info.completed_at is not None
    assert handlers.calls == [("ReserveStock", "o-1"), ("ChargeCard", "o-1"), ("ShipOrder", "o-1")]
    assert all(name.startswith(f"commandbus-{SAGA_DOMAIN}") for name in handlers.threads)
    assert loop_thread_name(sync_bus.runtime) not in handlers.threads

    trail = repo.get_audit_trail(process_id)
    assert [(e.entry_type, e.step, e.reply_outcome) for e in trail] == [
        ("STEP", "RESERVE", ReplyOutcome.SUCCESS),
        ("STEP", "CHARGE", ReplyOutcome.SUCCESS),
        ("STEP", "SHIP", ReplyOutcome.SUCCESS),
    ]
    for entry in trail:
        assert entry.command_data == {"order_id": "o-1", "amount": 250}
        assert entry.sent_at is not None and entry.received_at is not None
        assert entry.command_id is not None
        command = sync_bus.get_command(SAGA_DOMAIN, entry.command_id)
        assert command is not None and command.status is CommandStatus.COMPLETED
        assert (command.correlation_id, command.reply_to) == (process_id, REPLY_QUEUE)
    assert router.router.stats["applied"] == 3

    assert repo.list(SAGA_DOMAIN) == [info]
    assert repo.list(SAGA_DOMAIN, status=ProcessStatus.COMPLETED) == [info]
    assert repo.list(SAGA_DOMAIN, status=ProcessStatus.FAILED) == []
    assert repo.get(uuid.uuid4()) is None


def test_a_business_rule_failure_compensates_in_reverse(
    worker: SyncWorker,
    router: SyncProcessReplyRouter,
    manager: SyncProcessManager,
    repo: SyncProcessRepository,
    saga: OrderSaga,
    handlers: Handlers,
) -> None:
    def refused(command: Command) -> None:
        raise BusinessRuleError("NOT_SHIPPABLE", "the courier refused the parcel")

    handlers.script[("ShipOrder", "o-2")] = refused
    router.run(block=False)
    process_id = manager.start({"order_id": "o-2", "amount": 10})
    info = wait_for_process(repo, process_id, ProcessStatus.COMPENSATED)

    assert (info.error_code, info.error_message) == (
        "NOT_SHIPPABLE",
        "the courier refused the parcel",
    )
    state = state_of(saga, info)
    assert state.refunded and state.released and state.tracking is None
    assert [(e.entry_type, e.step, e.reply_outcome) for e in repo.get_audit_trail(process_id)] == [
        ("STEP", "RESERVE", ReplyOutcome.SUCCESS),
        ("STEP", "CHARGE", ReplyOutcome.SUCCESS),
        ("STEP", "SHIP", ReplyOutcome.FAILED),
        ("COMPENSATION", "REFUND", ReplyOutcome.SUCCESS),
        ("COMPENSATION", "RELEASE", ReplyOutcome.SUCCESS),
    ]


def test_parked_replies_are_listed_retried_and_discarded_through_the_repository(
    worker: SyncWorker,
    router: SyncProcessReplyRouter,
    repo: SyncProcessRepository,
    sync_bus: SyncCommandBus,
) -> None:
    """A reply for a process nobody knows is parked; the operator acts on it."""
    router.run(block=False)
    stray = uuid.uuid4()
    command_id = uuid.uuid4()
    sync_bus.send(
        SAGA_DOMAIN,
        COMMAND_TYPES[Step.RESERVE],
        command_id,
        {"order_id": "stray", "amount": 1},
        correlation_id=stray,
        reply_to=REPLY_QUEUE,
    )
    (parked,) = wait_until(
        lambda: repo.list_parked_replies(queue=REPLY_QUEUE), what="the stray reply parked"
    )
    assert (parked.command_id, parked.correlation_id) == (command_id, stray)
    assert parked.reason_code == "UNKNOWN_PROCESS"
    assert parked.outcome is ReplyOutcome.SUCCESS

    # Still unknown: the router parks it again.
    repo.retry_parked_reply(parked.parked_id, operator="alice", reason="try once more")
    (again,) = wait_until(
        lambda: [p for p in repo.list_parked_replies() if p.parked_id != parked.parked_id],
        what="the retried reply parked again",
    )
    assert again.command_id == command_id
    assert [p.parked_id for p in repo.list_parked_replies()] == [again.parked_id]

    with pytest.raises(ValidationError) as caught:
        repo.discard_parked_reply(again.parked_id, operator="alice", reason="a\ud800b")
    assert caught.value.field == "reason"
    repo.discard_parked_reply(again.parked_id, operator="alice", reason="a stray")
    assert repo.list_parked_replies() == []
    trail = sync_bus.get_audit_trail(command_id, domain=SAGA_DOMAIN)
    acts = [e for e in trail if e.event_type.startswith("OPERATOR_REPLY")]
    assert [(e.event_type, e.details["operator"], e.details["reason"]) for e in acts] == [
        ("OPERATOR_REPLY_RETRY", "alice", "try once more"),
        ("OPERATOR_REPLY_DISCARD", "alice", "a stray"),
    ]
    with pytest.raises(InvalidOperationError, match=f"no parked reply {again.parked_id}"):
        repo.discard_parked_reply(again.parked_id, operator="alice", reason="again")
    with pytest.raises(InvalidOperationError, match=f"no parked reply {parked.parked_id}"):
        repo.retry_parked_reply(parked.parked_id, operator="alice")
    with pytest.raises(ValidationError) as caught:
        repo.retry_parked_reply(0, operator="alice")
    assert caught.value.field == "parked_id"


# -- outbox: start a process in the caller's transaction ----------------------------------


def test_start_on_the_callers_connection_appears_at_commit(
    manager: SyncProcessManager,
    repo: SyncProcessRepository,
    sync_bus: SyncCommandBus,
    conn: psycopg.Connection[Any],
) -> None:
    with conn.transaction():
        conn.execute("SELECT 1")  # the app's own work
        process_id = manager.start({"order_id": "ok", "amount": 1}, conn=conn)
        assert repo.get(process_id) is None  # not committed yet
        assert sync_bus.query_commands(domain=SAGA_DOMAIN) == []
    info = repo.get(process_id)
    assert info is not None
    assert info.status is ProcessStatus.WAITING_FOR_REPLY
    assert info.current_step == "RESERVE"
    assert info.current_command_status is CommandStatus.PENDING
    (command,) = sync_bus.query_commands(domain=SAGA_DOMAIN)
    assert (command.command_type, command.correlation_id) == ("ReserveStock", process_id)
    assert command.command_id == info.current_command_id


def test_start_on_the_callers_connection_is_gone_after_rollback(
    manager: SyncProcessManager,
    repo: SyncProcessRepository,
    sync_bus: SyncCommandBus,
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(ZeroDivisionError), conn.transaction():
        process_id = manager.start({"order_id": "rb", "amount": 1}, conn=conn)
        1 / 0  # noqa: B018
    assert repo.get(process_id) is None
    assert sync_bus.query_commands(domain=SAGA_DOMAIN) == []

    # Django's atomic() before its first query: our statements open the caller's transaction.
    idle = manager.start({"order_id": "idle", "amount": 1}, conn=conn)
    conn.rollback()
    assert repo.get(idle) is None
    assert sync_bus.query_commands(domain=SAGA_DOMAIN) == []
    kept = manager.start({"order_id": "idle", "amount": 1}, conn=conn)
    conn.commit()
    assert repo.get(kept) is not None


def test_a_started_outbox_process_runs_once_committed(
    worker: SyncWorker,
    router: SyncProcessReplyRouter,
    manager: SyncProcessManager,
    repo: SyncProcessRepository,
    conn: psycopg.Connection[Any],
) -> None:
    router.run(block=False)
    with conn.transaction():
        process_id = manager.start({"order_id": "o-3", "amount": 5}, conn=conn)
    info = wait_for_process(repo, process_id, ProcessStatus.COMPLETED)
    assert info.completed_steps == ["RESERVE", "CHARGE", "SHIP"]


def test_start_refuses_what_is_not_a_sync_connection(
    manager: SyncProcessManager, repo: SyncProcessRepository
) -> None:
    with pytest.raises(ValidationError, match=r"must be a psycopg\.Connection") as caught:
        manager.start({"order_id": "x", "amount": 1}, conn="dsn")  # type: ignore[arg-type]
    assert caught.value.field == "conn"
    assert repo.list(SAGA_DOMAIN) == []


def test_sync_process_manager_checks_its_manager(
    runtime: SyncRuntime, database_url: str, schema: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SyncProcessManager(object(), runtime=runtime)  # type: ignore[arg-type]
    assert caught.value.field == "manager"
    with SyncRuntime() as other:
        foreign = other.open_pool(database_url, min_size=1, max_size=2)
        with pytest.raises(ValidationError, match="another event loop"):
            SyncProcessManager(OrderSaga(CommandBus(foreign, schema=schema)), runtime=runtime)


# -- outbox: batches on the caller's connection -------------------------------------------


def test_create_batch_on_the_callers_connection_appears_at_commit(
    sync_bus: SyncCommandBus, conn: psycopg.Connection[Any]
) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    with conn.transaction():
        result = sync_bus.create_batch(
            SAGA_DOMAIN,
            [BatchCommand("ShipOrder", cid, {"i": i}) for i, cid in enumerate(ids)],
            name="nightly",
            custom_data={"by": "cron"},
            conn=conn,
        )
        assert sync_bus.get_batch(SAGA_DOMAIN, result.batch_id) is None
        assert sync_bus.get_command(SAGA_DOMAIN, ids[0]) is None
    assert (result.domain, result.total) == (SAGA_DOMAIN, 3)
    assert [r.command_id for r in result.results] == ids

    info = sync_bus.get_batch(SAGA_DOMAIN, result.batch_id)
    assert info is not None
    assert (info.name, info.custom_data) == ("nightly", {"by": "cron"})
    assert (info.total, info.pending, info.in_progress, info.completed) == (3, 3, 0, 0)
    assert (info.failed, info.canceled, info.in_troubleshooting) == (0, 0, 0)
    assert info.status is BatchStatus.PENDING
    listed = sync_bus.list_batch_commands(SAGA_DOMAIN, result.batch_id)
    assert sorted(m.command_id for m in listed) == sorted(ids)
    assert all(m.batch_id == result.batch_id for m in listed)


def test_create_batch_on_the_callers_connection_is_gone_after_rollback(
    sync_bus: SyncCommandBus, conn: psycopg.Connection[Any]
) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    with pytest.raises(ZeroDivisionError), conn.transaction():
        result = sync_bus.create_batch(
            SAGA_DOMAIN, [BatchCommand("ShipOrder", cid, {}) for cid in ids], conn=conn
        )
        1 / 0  # noqa: B018
    assert sync_bus.get_batch(SAGA_DOMAIN, result.batch_id) is None
    assert sync_bus.list_batches(SAGA_DOMAIN) == []
    assert all(sync_bus.get_command(SAGA_DOMAIN, cid) is None for cid in ids)


def test_create_batch_with_a_taken_command_id_writes_nothing(
    sync_bus: SyncCommandBus, conn: psycopg.Connection[Any]
) -> None:
    taken, fresh = uuid.uuid4(), uuid.uuid4()
    sync_bus.send(SAGA_DOMAIN, "ShipOrder", taken, {})
    with conn.transaction():
        with pytest.raises(DuplicateCommandError) as caught:
            sync_bus.create_batch(
                SAGA_DOMAIN,
                [BatchCommand("ShipOrder", fresh, {}), BatchCommand("ShipOrder", taken, {})],
                conn=conn,
            )
        assert caught.value.command_ids == [taken]
        assert conn.execute("SELECT 42").fetchone() == (42,)  # the caller's tx is usable
    assert sync_bus.list_batches(SAGA_DOMAIN) == []
    assert sync_bus.get_command(SAGA_DOMAIN, fresh) is None
    meta = sync_bus.get_command(SAGA_DOMAIN, taken)
    assert meta is not None and meta.batch_id is None


def test_create_batch_repeating_a_command_id_is_refused_before_any_write(
    sync_bus: SyncCommandBus, conn: psycopg.Connection[Any]
) -> None:
    twice = uuid.uuid4()
    with conn.transaction():
        with pytest.raises(DuplicateCommandError) as caught:
            sync_bus.create_batch(
                SAGA_DOMAIN,
                [BatchCommand("ShipOrder", twice, {}), BatchCommand("ShipOrder", twice, {})],
                conn=conn,
            )
        assert caught.value.command_ids == [twice]
    assert sync_bus.list_batches(SAGA_DOMAIN) == []
    assert sync_bus.get_command(SAGA_DOMAIN, twice) is None


def test_create_batch_on_the_callers_connection_runs_a_plain_def_on_complete(
    worker: SyncWorker, sync_bus: SyncCommandBus, conn: psycopg.Connection[Any]
) -> None:
    seen: list[tuple[BatchInfo, str]] = []
    called = threading.Event()

    def on_complete(info: BatchInfo) -> None:
        seen.append((info, threading.current_thread().name))
        called.set()

    ids = [uuid.uuid4(), uuid.uuid4()]
    with conn.transaction():
        result = sync_bus.create_batch(
            SAGA_DOMAIN,
            [BatchCommand("ShipOrder", cid, {"order_id": "b", "amount": 1}) for cid in ids],
            conn=conn,
            on_complete=on_complete,
        )
    assert called.wait(15), "on_complete was not called"
    ((info, thread_name),) = seen
    assert (info.batch_id, info.status, info.completed) == (
        result.batch_id,
        BatchStatus.COMPLETED,
        2,
    )
    assert thread_name != loop_thread_name(sync_bus.runtime)  # a worker thread, not the loop
    for cid in ids:
        wait_for_status(sync_bus, SAGA_DOMAIN, cid, CommandStatus.COMPLETED)


# -- the router's lifecycle ---------------------------------------------------------------


def test_stop_returns_with_nothing_running(router: SyncProcessReplyRouter) -> None:
    router.stop()  # never started: nothing to do
    assert not router.running
    router.run(block=False)
    assert router.running
    assert router.router.running
    assert router.router.ready.is_set()
    router.stop(timeout=5)
    assert not router.running
    assert not router.router.running
    assert not router.router.ready.is_set()


def test_running_twice_is_refused(router: SyncProcessReplyRouter) -> None:
    router.run(block=False)
    with pytest.raises(InvalidOperationError, match="running already"):
        router.run(block=False)
    assert router.running  # the first run is unharmed
    assert router.router.running


def test_a_stopped_router_runs_again(
    worker: SyncWorker,
    router: SyncProcessReplyRouter,
    manager: SyncProcessManager,
    repo: SyncProcessRepository,
) -> None:
    router.run(block=False)
    router.stop(timeout=5)
    router.run(block=False)
    assert router.running
    process_id = manager.start({"order_id": "again", "amount": 1})
    wait_for_process(repo, process_id, ProcessStatus.COMPLETED)


def test_a_blocking_run_returns_after_stop_from_another_thread(
    router: SyncProcessReplyRouter,
) -> None:
    run = BlockingRun(router)
    try:
        wait_until(lambda: router.router.ready.is_set(), what="router ready")
        assert not run.returned.is_set()
        router.stop(timeout=5)
        assert run.returned.wait(10)
    finally:
        router.stop(timeout=5)
        run.thread.join(10)
    assert run.errors == []
    assert not router.running


def test_run_overrides_concurrency(router: SyncProcessReplyRouter) -> None:
    with pytest.raises(ValidationError) as caught:
        router.run(block=False, concurrency=0)
    assert caught.value.field == "concurrency"
    assert not router.running
    router.run(block=False, concurrency=3)
    assert router.router.concurrency == 3


def test_a_start_up_error_is_raised_by_run(
    runtime: SyncRuntime, database_url: str, schema: str, saga: OrderSaga
) -> None:
    small = runtime.open_pool(database_url, min_size=1, max_size=2)
    router = SyncProcessReplyRouter(
        pool=small,
        reply_queue=REPLY_QUEUE,
        managers=[saga],
        runtime=runtime,
        schema=schema,
        concurrency=5,
    )
    with pytest.raises(ConfigurationError, match="max_size=2"):
        router.run(block=False)
    assert not router.running


def test_close_stops_the_router_and_closes_the_pool_it_opened(
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    database_url: str,
    schema: str,
    saga: OrderSaga,
) -> None:
    router = SyncProcessReplyRouter(
        conninfo=database_url,
        pool_kwargs={"min_size": 1, "max_size": 4},
        reply_queue=REPLY_QUEUE,
        managers=[saga],
        runtime=runtime,
        schema=schema,
        concurrency=2,
    )
    router.run(block=False)
    owned = router.router.pool
    assert owned is not sync_pool
    router.close()
    assert not router.running
    assert not router.router.running
    assert owned.closed
    assert not sync_pool.closed


def test_built_from_a_router(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str, saga: OrderSaga
) -> None:
    core = ProcessReplyRouter(
        sync_pool, reply_queue=REPLY_QUEUE, managers=[saga], schema=schema, concurrency=2
    )
    router = SyncProcessReplyRouter(core, runtime=runtime)
    assert router.router is core
    try:
        router.run(block=False)
        assert core.running
    finally:
        router.stop(timeout=5)
    assert not core.running


def test_router_constructor_rejects_what_it_cannot_honour(
    runtime: SyncRuntime,
    sync_pool: AsyncConnectionPool,
    schema: str,
    saga: OrderSaga,
    manager: SyncProcessManager,
) -> None:
    core = ProcessReplyRouter(sync_pool, reply_queue=REPLY_QUEUE, managers=[saga], schema=schema)
    with pytest.raises(ValidationError) as caught:
        SyncProcessReplyRouter(core, pool=sync_pool, runtime=runtime)
    assert caught.value.field == "router"
    with pytest.raises(ValidationError) as caught:
        SyncProcessReplyRouter(core, runtime=runtime, managers=[manager])
    assert caught.value.field == "managers"
    with pytest.raises(ValidationError) as caught:
        SyncProcessReplyRouter(pool=sync_pool, managers=[manager], runtime=runtime)
    assert caught.value.field == "reply_queue"
    with pytest.raises(ValidationError) as caught:
        SyncProcessReplyRouter(
            pool=sync_pool,
            reply_queue=REPLY_QUEUE,
            managers=manager,  # type: ignore[arg-type]
            runtime=runtime,
            schema=schema,
        )
    assert caught.value.field == "managers"
    with pytest.raises(ConfigurationError, match="replies to"):
        SyncProcessReplyRouter(
            pool=sync_pool,
            reply_queue="elsewhere",
            managers=[manager],
            runtime=runtime,
            schema=schema,
        )


def test_repository_constructor_checks(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, database_url: str, schema: str
) -> None:
    from commandbus import ProcessRepository

    core = ProcessRepository(sync_pool, schema=schema)
    assert SyncProcessRepository(core, runtime=runtime).repository is core
    with pytest.raises(ValidationError) as caught:
        SyncProcessRepository(core, pool=sync_pool, runtime=runtime)
    assert caught.value.field == "repository"
    with pytest.raises(ValidationError) as caught:
        SyncProcessRepository(core, runtime=runtime, schema=schema)
    assert caught.value.field == "schema"
    with SyncRuntime() as other:
        foreign = other.open_pool(database_url, min_size=1, max_size=2)
        with pytest.raises(ValidationError, match="another event loop"):
            SyncProcessRepository(ProcessRepository(foreign, schema=schema), runtime=runtime)
