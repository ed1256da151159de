"""Seeding the console tests: commands sent through the bus, some parked by SQL."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, SendRequest

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss=2">'


async def send(
    bus: CommandBus, n: int, *, domain: str = "orders", command_type: str = "Charge", **data: Any
) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    await bus.send_batch(
        [SendRequest(domain, command_type, i, {"n": k, **data}) for k, i in enumerate(ids)]
    )
    return ids


async def park(
    pool: AsyncConnectionPool,
    schema: str,
    ids: list[uuid.UUID],
    *,
    error_type: str = "PermanentCommandError",
    error_code: str = "DECLINED",
    message: str = "card declined",
    traceback: str | None = "Traceback (most recent call last):\n  ...",
) -> None:
    """Put sent commands into the troubleshooting queue as a worker would leave them."""
    query = sql.SQL(
        "UPDATE {}.commands SET status = 'IN_TROUBLESHOOTING_QUEUE', attempts = 1, vt = NULL,"
        " last_error_type = %s, last_error_code = %s, last_error_message = %s,"
        " last_error_traceback = %s, updated_at = clock_timestamp()"
        " WHERE command_id = ANY(%s)"
    ).format(sql.Identifier(schema))
    async with pool.connection() as conn:
        await conn.execute(query, [error_type, error_code, message, traceback, ids])


def csrf(page: httpx.Response) -> str:
    """The CSRF token of the first form of a page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "no CSRF token on the page"
    return found.group(1)
