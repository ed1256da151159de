"""ProcessReplyRouter: applies the replies of a reply queue to the processes they answer.

For each leased reply, one transaction: ack the reply (only if our lease is current),
lock the process row (``SELECT ... FOR UPDATE`` by correlation id), let its manager
advance it, record the reply and the next command in the process audit, and send the
next command through the bus's send statement. Either all of it commits or none.

* Replies for one process are applied one at a time (the row lock), and in arrival
  order within one router (replies of one process are chained).
* A reply that does not answer the process's current command (stale, duplicate) or
  arrives for a finished process is recorded in the process audit and acked.
* A reply for an unknown process or process type is parked (``parked_replies``) with a
  clear reason, never retried in a loop.
* A reply whose handling raises is released for a retry after the ``RetryPolicy``
  backoff (its read count is the attempt number) and parked after ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import traceback
import uuid
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._consumer import Consumer
from commandbus._db import execute, fetch_one
from commandbus._errors import ConfigurationError, ValidationError
from commandbus._registry import member_id
from commandbus._validation import (
    check_concurrency,
    check_lease,
    check_name,
    check_poll_interval,
    check_schema,
)
from commandbus.hooks import Hook, Hooks, ReplyRouted, Routing
from commandbus.models import Reply
from commandbus.process._advance import Snapshot, Transition, advance, ignore_reason
from commandbus.process.manager import BaseProcessManager
from commandbus.replies import ReplyQueue
from commandbus.retry import RetryPolicy

__all__ = ["ProcessReplyRouter"]

log = logging.getLogger("commandbus.process")

_FETCH_BATCH = 100


class ProcessReplyRouter(Consumer):
    """Applies replies from ``reply_queue`` to processes until :meth:`stop`."""

    kind = "router"
    slot_name = "replies"

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        reply_queue: str,
        managers: Sequence[BaseProcessManager[Any, Any]],
        concurrency: int = 10,
        visibility_timeout: float = 30,
        use_notify: bool = True,
        schema: str = "commandbus",
        retry_policy: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        hooks: Sequence[Hook] | None = None,
        listen_conninfo: str | None = None,
    ) -> None:
        self.pool = pool
        self.reply_queue = check_name("reply_queue", reply_queue)
        self.schema = check_schema(schema)
        #: Callables that see each reply routed (see :mod:`commandbus.hooks`).
        self.hooks = Hooks(hooks)
        self.concurrency = check_concurrency("concurrency", concurrency)
        self.visibility_timeout = check_lease("visibility_timeout", visibility_timeout)
        self.poll_interval = check_poll_interval(poll_interval)
        self.use_notify = use_notify
        self.listen_conninfo = listen_conninfo
        self.retry_policy = retry_policy or RetryPolicy()
        self.managers = self._index(managers)
        self._queue = ReplyQueue(
            pool, self.reply_queue, schema=self.schema, visibility_timeout=self.visibility_timeout
        )
        self._init_lifecycle()
        #: This router's id (as a worker's name): in the worker registry and logs.
        self.name = member_id(self)
        self.stats: dict[str, int] = dict.fromkeys(
            ("received", "applied", "ignored", "parked", "retried", "lease_lost"), 0
        )
        self._tails: dict[uuid.UUID, asyncio.Task[None]] = {}

    def _index(
        self, managers: Sequence[BaseProcessManager[Any, Any]]
    ) -> dict[str, BaseProcessManager[Any, Any]]:
        if isinstance(managers, BaseProcessManager) or not managers:
            raise ValidationError("managers", "must be a non-empty list of process managers")
        index: dict[str, BaseProcessManager[Any, Any]] = {}
        for manager in managers:
            if not isinstance(manager, BaseProcessManager):
                raise ValidationError(
                    "managers", f"{type(manager).__name__} is not a BaseProcessManager"
                )
            if manager.process_type in index:
                raise ConfigurationError(f"two managers for process type {manager.process_type!r}")
            if manager.reply_queue != self.reply_queue:
                raise ConfigurationError(
                    f"{type(manager).__name__} replies to {manager.reply_queue!r}, "
                    f"but this router reads {self.reply_queue!r}"
                )
            if manager.bus.schema != self.schema:
                raise ConfigurationError(
                    f"{type(manager).__name__} uses schema {manager.bus.schema!r}, "
                    f"but this router uses {self.schema!r}"
                )
            index[manager.process_type] = manager
        return index

    # -- lifecycle -----------------------------------------------------------------

    def _member(self) -> str:
        return self.name

    def _scope(self) -> str:
        return self.reply_queue

    def _channel(self) -> str:
        return self._queue.channel

    async def _fetch_loop(self) -> None:
        while not self._stopping:
            free = self.concurrency - len(self._in_flight)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._wake.clear()
            wanted = min(free, _FETCH_BATCH)
            replies, pause = await self._fetch(self._queue.read(wanted), log)
            self.stats["received"] += len(replies)
            for reply in sorted(replies, key=lambda r: r.msg_id):
                self._spawn(reply)
            if len(replies) < wanted:  # drained: sleep until woken or polled
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)

    def _spawn(self, reply: Reply) -> None:
        """Start applying ``reply``, after any earlier reply of the same process."""
        key = reply.correlation_id
        previous = None if key is None else self._tails.get(key)
        task = asyncio.create_task(self._handle_after(previous, reply))
        self._in_flight.add(task)
        task.add_done_callback(self._on_task_done)
        if key is not None:
            self._tails[key] = task
            task.add_done_callback(lambda t: self._forget_tail(key, t))

    def _forget_tail(self, key: uuid.UUID, task: asyncio.Task[None]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("unexpected router error", exc_info=task.exception())

    async def _release(self) -> None:
        self._tails.clear()

    # -- applying one reply --------------------------------------------------------

    async def _handle_after(self, previous: asyncio.Task[None] | None, reply: Reply) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        await self._handle(reply)

    async def _handle(self, reply: Reply) -> None:
        max_attempts = self.retry_policy.max_attempts
        try:
            if reply.read_count > max_attempts:
                reason = (
                    f"leased {reply.read_count} times with max_attempts={max_attempts}: earlier "
                    "attempts never finished (router died or overran its lease)"
                )
                await self._park_alone(reply, "ATTEMPTS_EXHAUSTED", reason, None)
                return
            result = await self._apply_wrapped(reply)
        except Exception as exc:
            failed = await self._failed(reply, exc)
            if failed is not None:
                await self._routed(reply, failed)
            return
        self.stats[result] += 1
        await self._routed(reply, result)

    async def _apply_wrapped(self, reply: Reply) -> str:
        """:meth:`_apply` inside the hooks' middleware: a trace span, say, current while
        the process advances and sends its next command."""
        if not self.hooks.wraps:
            return await self._apply(reply)
        run = Routing(reply, self.name)
        with self.hooks.routing(run):
            run.result = await self._apply(reply)
        return run.result

    async def _routed(self, reply: Reply, result: str) -> None:
        if self.hooks:
            await self.hooks.emit(
                ReplyRouted(
                    self.reply_queue,
                    reply.domain,
                    reply.command_type,
                    reply.command_id,
                    reply.correlation_id,
                    result,
                )
            )

    async def _apply(self, reply: Reply) -> str:
        """One transaction; returns the name of the stat it counts toward."""
        async with self.pool.connection() as conn, conn.transaction():
            if not await self._queue.ack(reply, conn=conn):
                log.warning("reply %s: lease lost before it was applied", reply.msg_id)
                return "lease_lost"
            if reply.correlation_id is None:
                await self._park(conn, reply, "UNKNOWN_PROCESS", "the reply has no correlation_id")
                return "parked"
            row = await fetch_one(
                conn, _sql.query("process_lock", self.schema), {"process_id": reply.correlation_id}
            )
            if row is None:
                await self._park(
                    conn, reply, "UNKNOWN_PROCESS", f"no process {reply.correlation_id}"
                )
                return "parked"
            snap = Snapshot.from_row(row)
            manager = self.managers.get(snap.process_type)
            if manager is None:
                known = ", ".join(sorted(self.managers))
                await self._park(
                    conn,
                    reply,
                    "UNKNOWN_PROCESS_TYPE",
                    f"process {snap.process_id} is of type {snap.process_type!r}, which this "
                    f"router does not manage (it knows: {known})",
                )
                return "parked"
            reason = ignore_reason(snap, reply)
            if reason is not None:
                params = {**_reply_params(reply), "process_id": snap.process_id, "note": reason}
                await execute(conn, _sql.query("process_note_reply", self.schema), params)
                return "ignored"
            transition = advance(manager, snap, reply)
            await execute(
                conn,
                _sql.query("process_advance", self.schema),
                _advance_params(snap, reply, transition),
            )
            if transition.next is not None:
                await manager.bus.sender.send([transition.next.request], conn=conn)
            return "applied"

    async def _failed(self, reply: Reply, exc: Exception) -> str | None:
        """Handling raised: retry after the policy's backoff, or park after the last try.
        Returns what was done (``retried``, ``parked``), None if recording that failed."""
        attempt = reply.read_count
        try:
            if self.retry_policy.should_retry(attempt):
                delay = self.retry_policy.delay_after(attempt)
                log.warning(
                    "reply %s (attempt %d/%d) failed: %r; retrying in %.1fs",
                    reply.msg_id,
                    attempt,
                    self.retry_policy.max_attempts,
                    exc,
                    delay,
                )
                await self._queue.release(reply, delay=delay)
                self.stats["retried"] += 1
                return "retried"
            log.error("reply %s failed %d times; parking it", reply.msg_id, attempt)
            tb = "".join(traceback.format_exception(exc))
            reason = f"{type(exc).__name__}: {exc} (after {attempt} attempts)"
            await self._park_alone(reply, "HANDLING_FAILED", reason, tb)
            return "parked"
        except Exception:
            log.exception(
                "reply %s: recording the failure failed; its lease will expire", reply.msg_id
            )
            return None

    async def _park_alone(self, reply: Reply, code: str, reason: str, tb: str | None) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            if await self._queue.ack(reply, conn=conn):
                await self._park(conn, reply, code, reason, tb)
                self.stats["parked"] += 1

    async def _park(
        self,
        conn: AsyncConnection,
        reply: Reply,
        code: str,
        reason: str,
        tb: str | None = None,
    ) -> None:
        log.error("reply %s parked: %s: %s", reply.msg_id, code, reason)
        params = {
            **_reply_params(reply),
            "queue": reply.queue,
            "correlation_id": reply.correlation_id,
            "read_ct": reply.read_count,
            "enqueued_at": reply.created_at,
            "reason_code": code,
            "reason": reason,
            "traceback": tb,
            "trace_context": None
            if reply.trace_context is None
            else json.dumps(reply.trace_context),
        }
        await execute(conn, _sql.query("reply_park", self.schema), params)


def _reply_params(reply: Reply) -> dict[str, Any]:
    return {
        "command_domain": reply.domain,
        "command_id": reply.command_id,
        "command_type": reply.command_type,
        "reply_outcome": reply.outcome.value,
        "reply_data": None if reply.result is None else json.dumps(reply.result),
        "reply_error_code": reply.error_code,
        "reply_error_message": reply.error_message,
    }


def _advance_params(snap: Snapshot, reply: Reply, t: Transition) -> dict[str, Any]:
    nxt = t.next
    return {
        "process_id": snap.process_id,
        "status": t.status.value,
        "current_step": None if nxt is None else nxt.step,
        "command_domain": None if nxt is None else nxt.request.domain,
        "command_id": None if nxt is None else nxt.request.command_id,
        "command_type": None if nxt is None else nxt.request.command_type,
        "command_data": None if nxt is None else nxt.data_json,
        "entry_type": t.entry_type,
        "state": t.state_json,
        "completed_steps": json.dumps(t.completed_steps),
        "compensation_steps": json.dumps(t.compensation_steps),
        "error_code": t.error_code,
        "error_message": t.error_message,
        "final": t.status.is_final,
        "reply_command_id": reply.command_id,
        "reply_outcome": reply.outcome.value,
        "reply_data": None if reply.result is None else json.dumps(reply.result),
        "reply_error_code": reply.error_code,
        "reply_error_message": reply.error_message,
    }
