"""Reading a reply queue: lease, then ack (or release) each reply.

Replies are what handlers' outcomes become for whoever named the queue in ``reply_to``.
``ProcessReplyRouter`` builds on this; applications may read their own queues too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from commandbus import _sql
from commandbus._channels import reply_channel
from commandbus._db import fetch_all
from commandbus._handler_conn import HandlerConnection
from commandbus._validation import check_delay, check_lease, check_name, check_paging, check_schema
from commandbus.models import Reply, ReplyOutcome

__all__ = ["ReplyQueue", "read_replies"]


class ReplyQueue:
    """One named reply queue. Ownership of a leased reply is ``(msg_id, read_count)``."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        queue: str,
        *,
        schema: str = "commandbus",
        visibility_timeout: float = 30,
    ) -> None:
        self.pool = pool
        self.queue = check_name("queue", queue)
        self.schema = check_schema(schema)
        self.visibility_timeout = check_lease("visibility_timeout", visibility_timeout)

    @property
    def channel(self) -> str:
        """The LISTEN channel notified when replies arrive."""
        return reply_channel(self.schema, self.queue)

    async def read(
        self,
        limit: int = 10,
        *,
        visibility_timeout: float | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[Reply]:
        """Lease up to ``limit`` replies; unacked ones reappear after the lease."""
        params = {
            "queue": self.queue,
            "limit": check_paging(limit, 0)["limit"],
            "lease": self.visibility_timeout
            if visibility_timeout is None
            else check_lease("visibility_timeout", visibility_timeout),
        }
        rows = await self._run("read_replies", params, conn)
        return [_reply(row) for row in rows]

    async def ack(self, reply: Reply, *, conn: AsyncConnection | None = None) -> bool:
        """Delete a handled reply; False if the lease was lost (it will be redelivered)."""
        params = {"msg_id": reply.msg_id, "read_ct": reply.read_count}
        return bool(await self._run("ack_reply", params, conn))

    async def release(
        self, reply: Reply, *, delay: float = 0, conn: AsyncConnection | None = None
    ) -> bool:
        """Give a reply back, visible again after ``delay`` seconds."""
        params = {"msg_id": reply.msg_id, "read_ct": reply.read_count, "delay": check_delay(delay)}
        return bool(await self._run("release_reply", params, conn))

    async def _run(
        self, name: str, params: dict[str, Any], conn: AsyncConnection | None
    ) -> list[tuple[Any, ...]]:
        async with _connection(self.pool, conn) as c:
            return await fetch_all(c, _sql.query(name, self.schema), params)


@asynccontextmanager
async def _connection(
    pool: AsyncConnectionPool, conn: AsyncConnection | None
) -> AsyncIterator[AsyncConnection]:
    if isinstance(conn, HandlerConnection):  # ctx.conn: taken now, if not yet
        yield await conn.connection()
    elif conn is not None:
        yield conn
    else:
        async with pool.connection() as own:
            yield own


async def read_replies(
    pool: AsyncConnectionPool,
    queue: str,
    *,
    limit: int = 10,
    visibility_timeout: float = 30,
    schema: str = "commandbus",
) -> list[Reply]:
    """One-shot convenience: lease up to ``limit`` replies from ``queue``."""
    return await ReplyQueue(pool, queue, schema=schema).read(
        limit, visibility_timeout=visibility_timeout
    )


def _reply(row: Sequence[Any]) -> Reply:
    return Reply(
        msg_id=row[0],
        queue=row[1],
        domain=row[2],
        command_id=row[3],
        command_type=row[4],
        correlation_id=row[5],
        outcome=ReplyOutcome(row[6]),
        result=row[7],
        error_code=row[8],
        error_message=row[9],
        read_count=row[10],
        created_at=row[11],
        trace_context=row[12],
    )
