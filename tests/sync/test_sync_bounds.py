"""The sync twins refuse what the core refuses (they wrap it: one check, not two), before
anything is written: numbers out of range, NaN, infinities, huge values and text that is
not storable, with a ``ValidationError`` naming the argument."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

import commandbus_sync
from commandbus import HandlerRegistry, Retention, ValidationError
from commandbus_sync import (
    SyncCommandBus,
    SyncProcessReplyRouter,
    SyncProcessRepository,
    SyncRuntime,
    SyncScheduler,
    SyncTroubleshootingQueue,
    SyncWorker,
)
from commandbus_sync.config import configured_thread_pool_size
from core._tables import rows_written

NAN, INF = float("nan"), float("inf")
NUMBERS = [NAN, INF, -1, 1e308, 10**400, 2**63, True, timedelta.max]
TEXT = ["a\ud800b", "a\udcffb", "nul\x00", "  ", "x" * 4097]
ID = uuid.UUID(int=1)


class Twins:
    def __init__(self, runtime: SyncRuntime, pool: AsyncConnectionPool, schema: str) -> None:
        self.runtime, self.pool, self.schema = runtime, pool, schema
        self.bus = SyncCommandBus(pool=pool, runtime=runtime, schema=schema)
        self.tsq = SyncTroubleshootingQueue(pool=pool, runtime=runtime, schema=schema)
        self.repo = SyncProcessRepository(pool=pool, runtime=runtime, schema=schema)
        self.registry = HandlerRegistry()
        self.registry.register("d", "T", lambda command, ctx: None)

    def worker(self, **settings: Any) -> SyncWorker:
        return SyncWorker(
            pool=self.pool,
            runtime=self.runtime,
            domain="d",
            registry=self.registry,
            schema=self.schema,
            **settings,
        )

    def pause(self, **kwargs: Any) -> object:
        return commandbus_sync.pause_domain(
            self.pool, "d", runtime=self.runtime, schema=self.schema, **kwargs
        )


CASES: list[tuple[str, str, list[object], Callable[[Twins, Any], object]]] = [
    ("SyncCommandBus", "default_max_attempts", NUMBERS,
     lambda t, v: SyncCommandBus(pool=t.pool, runtime=t.runtime, default_max_attempts=v)),
    ("send", "delay", NUMBERS, lambda t, v: t.bus.send("d", "T", uuid.uuid4(), {}, delay=v)),
    ("send", "max_attempts", [0, 2**31, NAN], lambda t, v: t.bus.send("d", "T", ID, {},
                                                                      max_attempts=v)),
    ("cancel", "reason", TEXT, lambda t, v: t.bus.cancel("d", ID, reason=v)),
    ("SyncWorker", "visibility_timeout", [0, 86_401, *NUMBERS],
     lambda t, v: t.worker(visibility_timeout=v)),
    ("SyncWorker", "concurrency", [0, 10_001, 2**31, 1.5, True],
     lambda t, v: t.worker(concurrency=v)),
    ("SyncWorker", "poll_interval", [0, 3601, *NUMBERS], lambda t, v: t.worker(poll_interval=v)),
    ("SyncWorker", "thread_pool_size", [0, 10_001], lambda t, v: t.worker(thread_pool_size=v)),
    ("SyncWorker.run", "concurrency", [0, 10_001, 2**31],
     lambda t, v: t.worker().run(block=False, concurrency=v)),
    ("SyncWorker.stop", "timeout", [-1, 86_401, NAN, INF], lambda t, v: t.worker().stop(v)),
    ("configure", "thread_pool_size", [0, 10_001, 2**31],
     lambda t, v: commandbus_sync.configure(thread_pool_size=v)),
    ("pause_domain", "reason", TEXT, lambda t, v: t.pause(reason=v)),
    ("pause_domain", "operator", TEXT, lambda t, v: t.pause(operator=v, reason="why")),
    ("resume_domain", "operator", TEXT, lambda t, v: commandbus_sync.resume_domain(
        t.pool, "d", operator=v, runtime=t.runtime, schema=t.schema)),
    ("operator_retry", "operator", TEXT, lambda t, v: t.tsq.operator_retry("d", ID, operator=v)),
    ("operator_cancel", "reason", TEXT, lambda t, v: t.tsq.operator_cancel("d", ID, reason=v)),
    ("retry_parked_reply", "operator", TEXT,
     lambda t, v: t.repo.retry_parked_reply(1, operator=v)),
    ("discard_parked_reply", "reason", TEXT,
     lambda t, v: t.repo.discard_parked_reply(1, operator="o", reason=v)),
    ("SyncScheduler", "max_wait", [0, 86_401, *NUMBERS], lambda t, v: SyncScheduler(
        pool=t.pool, runtime=t.runtime, schedules=[], schema=t.schema, max_wait=v)),
    ("SyncPruner", "older_than", NUMBERS, lambda t, v: commandbus_sync.SyncPruner(
        pool=t.pool, runtime=t.runtime, retention=Retention(older_than=v))),
    ("SyncProcessReplyRouter", "visibility_timeout", [0, 86_401, *NUMBERS],
     lambda t, v: SyncProcessReplyRouter(pool=t.pool, runtime=t.runtime, reply_queue="q",
                                         managers=[], visibility_timeout=v)),
    ("check_health", "max_pending_age", NUMBERS, lambda t, v: commandbus_sync.check_health(
        t.pool, runtime=t.runtime, schema=t.schema, max_pending_age=v)),
]  # fmt: skip


def test_every_sync_twin_refuses_what_the_core_refuses_and_writes_nothing(
    runtime: SyncRuntime, sync_pool: AsyncConnectionPool, schema: str, database_url: str
) -> None:
    twins = Twins(runtime, sync_pool, schema)
    failures = []
    for entry, field, bad_values, call in CASES:
        for value in bad_values:
            shown = f"{entry}({field}={value!r:.40})"
            try:
                call(twins, value)
            except ValidationError as exc:
                if exc.field != field:
                    failures.append(f"{shown}: ValidationError names {exc.field!r}")
            except Exception as exc:
                failures.append(f"{shown}: {type(exc).__name__}: {exc}"[:200])
            else:
                failures.append(f"{shown}: accepted")
    assert failures == []
    assert configured_thread_pool_size() is None  # configure() kept nothing it refused
    assert rows_written(database_url, schema) == {}


@pytest.mark.parametrize("raw", ["inf", "nan", "1e308", str(2**31)])
def test_the_thread_variable_refuses_what_is_not_a_thread_count(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("COMMAND_BUS_SYNC_THREADS", raw)
    with pytest.raises(ValidationError) as caught:
        configured_thread_pool_size()
    assert caught.value.field == "COMMAND_BUS_SYNC_THREADS"
