"""A half-open network partition: a TCP proxy between the worker and the server freezes
(its sockets stay open, nothing flows). The worker notices (a failed heartbeat, logged
within a bounded time) and its stop(timeout) still returns within its budget."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

import commandbus._registry
from commandbus import Command, CommandBus, CommandStatus, HandlerContext, HandlerRegistry
from commandbus._consumer import STOP_CLEANUP_S
from core.helpers import DOMAIN, make_worker, start, wait_for_status, wait_until


class FreezingProxy:
    """Forwards bytes both ways until frozen; then holds every socket open, silent."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while not self.frozen.is_set():
                data = await reader.read(65536)
                if not data or self.frozen.is_set():
                    break
                writer.write(data)
                await writer.drain()
            await asyncio.Event().wait()  # frozen: keep the socket, send nothing

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        for a, b in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(a, b))
            self._tasks.add(task)

    def cut(self) -> None:
        """The network gives up: every socket through the proxy is closed."""
        for writer in self._writers:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for writer in self._writers:
                writer.close()


async def test_a_frozen_network_is_noticed_and_stop_returns_within_its_budget(
    database_url: str,
    schema: str,
    pool: AsyncConnectionPool,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commandbus._registry, "HEARTBEAT_INTERVAL_S", 0.5)
    info = conninfo_to_dict(database_url)
    proxy = FreezingProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    registry = HandlerRegistry()
    blocked = asyncio.Event()

    @registry.handler(DOMAIN, "Ping")
    async def ping(command: Command, ctx: HandlerContext) -> None:
        if command.data.get("hold"):
            blocked.set()
            await ctx.conn.execute("SELECT pg_sleep(60)")  # on the frozen path

    bus = CommandBus(pool, schema=schema)  # the sender talks to the server directly
    async with proxy.running() as port:
        name = f"frozen-{uuid.uuid4().hex[:8]}"
        through = make_conninfo(database_url, host="127.0.0.1", port=port, application_name=name)
        async with AsyncConnectionPool(through, min_size=2, max_size=8, open=False) as frozen:
            await frozen.open(wait=True)
            worker = make_worker(frozen, schema, registry, concurrency=2, poll_interval=0.2)
            task = await start(worker)
            first = uuid.uuid4()
            await bus.send(DOMAIN, "Ping", first, {})
            await wait_for_status(bus, DOMAIN, first, CommandStatus.COMPLETED)
            await bus.send(DOMAIN, "Ping", uuid.uuid4(), {"hold": True})
            await asyncio.wait_for(blocked.wait(), 10)

            with caplog.at_level(logging.WARNING, logger="commandbus"):
                proxy.frozen.set()

                async def noticed() -> bool:
                    return any("heartbeat failed" in r.getMessage() for r in caplog.records)

                await wait_until(noticed, timeout=10, what="the worker to notice")
                began = time.monotonic()
                await worker.stop(timeout=1)
                took = time.monotonic() - began
            assert took < 1 + STOP_CLEANUP_S + 1.5, took
            # What the cancelled run still waits on (a query cancel sent down the frozen
            # path) ends once the network gives up: cut it, and end the server's side of
            # those sessions, which still hold the handler's transaction and its locks.
            proxy.cut()
            async with pool.connection() as admin:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    (name,),
                )
            await asyncio.wait({task}, timeout=10)
            assert task.done() and not worker.running
            closing = asyncio.create_task(frozen.close(timeout=1))
            await asyncio.wait({closing}, timeout=5)
