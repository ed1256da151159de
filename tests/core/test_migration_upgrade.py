"""Upgrading a schema of version 3 (command, queue message and audit row per command) to
the one-row schema loses nothing: every command is delivered or kept as it was, and the
audit trail of finished commands stays readable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    TroubleshootingQueue,
    _sql,
    migrate,
)
from commandbus._sql import migration_files
from commandbus.migrations import _PRELUDE
from core.helpers import DOMAIN, make_worker, running, wait_for_status


async def _migrate_to_version_3(pool: AsyncConnectionPool, schema: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(_sql.render(_PRELUDE, schema), prepare=False)
        for version, name, template in _sql.migration_files():
            if version <= 3:
                await conn.execute(_sql.render(template, schema), prepare=False)
                await conn.execute(
                    sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
                        sql.Identifier(schema, "schema_version")
                    ),
                    [version, name],
                )


class OldSchema:
    """Writes rows the way version 3 of the library did."""

    def __init__(self, pool: AsyncConnectionPool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    async def run(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        query = sql.SQL(statement).format(schema=sql.Identifier(self.schema))
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description else []

    async def command(
        self,
        status: str,
        *,
        attempts: int = 0,
        queue_vt: str | None = None,
        events: tuple[str, ...] = (),
    ) -> uuid.UUID:
        command_id = uuid.uuid4()
        await self.run(
            "INSERT INTO {schema}.commands (domain, command_id, command_type, status, "
            "attempts, max_attempts, data) VALUES (%s, %s, 'Job', %s, %s, 3, '{{}}')",
            [DOMAIN, command_id, status, attempts],
        )
        msg_id = None
        if queue_vt is not None:
            ((msg_id,),) = await self.run(
                "INSERT INTO {schema}.queue (domain, command_id, vt, read_ct) "
                f"VALUES (%s, %s, {queue_vt}, %s) RETURNING msg_id",
                [DOMAIN, command_id, attempts],
            )
        for event in ("SENT", *events):
            details = {"msg_id": msg_id or 0} if event in ("SENT", "RECEIVED") else {}
            if event != "SENT":
                details["attempt"] = 1
            await self.run(
                "INSERT INTO {schema}.audit (domain, command_id, event_type, details) "
                "VALUES (%s, %s, %s, %s::jsonb)",
                [DOMAIN, command_id, event, __import__("json").dumps(details)],
            )
        return command_id


@pytest.fixture
async def old_pool(database_url: str, schema: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(database_url, min_size=2, max_size=20, open=False) as p:
        await _migrate_to_version_3(p, schema)
        yield p


async def test_every_command_of_a_version_3_schema_is_delivered_or_kept_after_upgrade(
    old_pool: AsyncConnectionPool, schema: str
) -> None:
    old = OldSchema(old_pool, schema)
    pending = await old.command("PENDING", queue_vt="now()")
    delayed = await old.command("PENDING", queue_vt="now() + interval '1 hour'")
    leased = await old.command(
        "IN_PROGRESS", attempts=1, queue_vt="now() + interval '1 second'", events=("RECEIVED",)
    )
    orphaned = await old.command(
        "IN_PROGRESS", attempts=1, queue_vt="now() - interval '1 minute'", events=("RECEIVED",)
    )
    retrying = await old.command(
        "PENDING", attempts=1, queue_vt="now()", events=("RECEIVED", "RETRY_SCHEDULED")
    )
    parked = await old.command(
        "IN_TROUBLESHOOTING_QUEUE",
        attempts=3,
        events=("RECEIVED", "MOVED_TO_TROUBLESHOOTING_QUEUE"),
    )
    done = await old.command("COMPLETED", attempts=1, events=("RECEIVED", "COMPLETED"))
    bus = CommandBus(old_pool, schema=schema)
    done_trail_before = await old.run(
        "SELECT audit_id, event_type, created_at FROM {schema}.audit "
        "WHERE command_id = %s ORDER BY audit_id",
        [done],
    )

    # Several processes upgrade at once: one applies it, the others find it done.
    applied = await asyncio.gather(*(migrate(old_pool, schema=schema) for _ in range(3)))
    after_3 = [version for version, _, _ in migration_files() if version > 3]
    assert sorted(applied, key=len) == [[], [], after_3]

    ran: list[uuid.UUID] = []
    registry = HandlerRegistry()

    @registry.handler(DOMAIN, "Job")
    async def job(command: Command, ctx: HandlerContext) -> None:
        ran.append(command.command_id)

    async with running(make_worker(old_pool, schema, registry, visibility_timeout=1)):
        for command_id in (pending, leased, orphaned, retrying):
            await wait_for_status(bus, DOMAIN, command_id, CommandStatus.COMPLETED)
        await TroubleshootingQueue(old_pool, schema=schema).operator_retry(
            DOMAIN, parked, operator="ops"
        )
        await wait_for_status(bus, DOMAIN, parked, CommandStatus.COMPLETED)

    assert sorted(ran) == sorted([pending, leased, orphaned, retrying, parked])
    still = await bus.get_command(DOMAIN, delayed)
    assert still is not None and still.status == CommandStatus.PENDING  # not due yet

    # Stored events keep their ids and times; SENT is derived from the command row now.
    trail = await bus.get_audit_trail(done)
    assert [e.event_type for e in trail] == ["SENT", "RECEIVED", "COMPLETED"]
    assert [(e.audit_id, e.created_at) for e in trail[1:]] == [
        (audit_id, at) for audit_id, _, at in done_trail_before[1:]
    ]
    done_meta = await bus.get_command(DOMAIN, done)
    assert done_meta is not None and trail[0].created_at == done_meta.created_at
    assert trail[0].audit_id == done_trail_before[0][0]
    assert [e.event_type for e in await bus.get_audit_trail(retrying)] == [
        "SENT",
        "RECEIVED",
        "RETRY_SCHEDULED",
        "RECEIVED",
        "COMPLETED",
    ]
    assert [e.event_type for e in await bus.get_audit_trail(orphaned)] == [
        "SENT",
        "RECEIVED",
        "RECEIVED",
        "COMPLETED",
    ]
    assert [e.event_type for e in await bus.get_audit_trail(parked)] == [
        "SENT",
        "RECEIVED",
        "MOVED_TO_TROUBLESHOOTING_QUEUE",
        "OPERATOR_RETRY",
        "RECEIVED",
        "COMPLETED",
    ]
    assert await old.run("SELECT to_regclass(%s)", [f'"{schema}".queue']) == [(None,)]
