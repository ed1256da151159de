"""Parking many commands at once, for the troubleshooting-queue tests.

A worker whose handler fails permanently parks one command in tens of milliseconds; the
bulk tests need hundreds with chosen errors and parked times. ``park_many`` sends them
in one batch and parks them with one UPDATE that leaves each row as the worker's
``finish`` would (status, cleared visibility, last error, parked time).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, SendRequest

TRACEBACK = 'Traceback (most recent call last):\n  File "handler.py", line 1\nRuntimeError: boom\n'


async def park_many(
    bus: CommandBus,
    pool: AsyncConnectionPool,
    schema: str,
    count: int,
    *,
    domain: str = "orders",
    command_type: str = "Pay",
    error_type: str | None = "PermanentCommandError",
    error_code: str | None = "BROKEN",
    message: str | None = "boom",
    reply_to: str | None = None,
    parked_at: datetime | None = None,
) -> list[uuid.UUID]:
    """Send ``count`` commands and park them as a failed handler would; returns their ids."""
    ids = [uuid.uuid4() for _ in range(count)]
    requests = [
        SendRequest(domain, command_type, command_id, {"n": n}, reply_to=reply_to)
        for n, command_id in enumerate(ids)
    ]
    for start in range(0, count, 5000):
        await bus.send_batch(requests[start : start + 5000])
    await park(pool, schema, ids, error_type, error_code, message, parked_at)
    return ids


async def park(
    pool: AsyncConnectionPool,
    schema: str,
    ids: list[uuid.UUID],
    error_type: str | None = "PermanentCommandError",
    error_code: str | None = "BROKEN",
    message: str | None = "boom",
    parked_at: datetime | None = None,
) -> None:
    statement = sql.SQL(
        "UPDATE {} SET status = 'IN_TROUBLESHOOTING_QUEUE', vt = NULL, attempts = 1,"
        " last_error_type = %(type)s, last_error_code = %(code)s,"
        " last_error_message = %(message)s, last_error_traceback = %(tb)s,"
        " updated_at = COALESCE(%(at)s::timestamptz, now())"
        " WHERE command_id = ANY (%(ids)s)"
    ).format(sql.Identifier(schema, "commands"))
    params: dict[str, Any] = {
        "type": error_type,
        "code": error_code,
        "message": message,
        "tb": TRACEBACK,
        "at": parked_at,
        "ids": ids,
    }
    async with pool.connection() as conn:
        await conn.execute(statement, params)
