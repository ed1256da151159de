"""Every page renders from a real database, read-only for anonymous visitors."""

from __future__ import annotations

import httpx
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus
from web.helpers import park, send


async def test_every_page_renders(
    anon: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await send(bus, 3)
    await park(pool, schema, ids[:2])
    for path in (
        "/",
        "/overview/live",
        "/tsq",
        "/commands",
        f"/commands/orders/{ids[0]}",
        "/batches",
        "/processes",
        "/workers",
        "/replies",
    ):
        response = await anon.get(path)
        assert response.status_code == 200, (path, response.text[-2000:])
