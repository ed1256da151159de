"""Bounded work per request: heavy reads share one result for a moment and run a few at a
time; too many waiting are turned away (503) rather than stalling every page."""

from __future__ import annotations

import re

import anyio
import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette

from commandbus import CommandBus, console
from commandbus_web import pages
from commandbus_web.load import Busy, Load
from web.helpers import csrf, park, send


async def test_one_computation_serves_every_request_asking_at_once() -> None:
    load, calls = Load(), []

    async def compute() -> int:
        calls.append(1)
        await anyio.sleep(0.05)
        return 42

    results: list[int] = []

    async def ask() -> None:
        results.append(await load.cached("k", compute))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(ask)
    assert results == [42] * 50 and len(calls) == 1


async def test_cached_results_expire_and_are_forgotten_after_an_action() -> None:
    now = [0.0]
    load, calls = Load(ttl=2.0, clock=lambda: now[0]), []

    async def compute() -> int:
        calls.append(1)
        return len(calls)

    assert await load.cached("k", compute) == 1
    now[0] = 1.9
    assert await load.cached("k", compute) == 1
    now[0] = 2.1
    assert await load.cached("k", compute) == 2
    load.forget()
    assert await load.cached("k", compute) == 3
    assert await load.cached("other", compute) == 4


async def test_a_result_computed_across_an_action_is_not_cached() -> None:
    load, release, calls = Load(), anyio.Event(), []

    async def compute() -> int:
        calls.append(1)
        if len(calls) == 1:
            await release.wait()
        return len(calls)

    async with anyio.create_task_group() as tg:
        tg.start_soon(load.cached, "k", compute)
        await anyio.wait_all_tasks_blocked()
        load.forget()  # an operator acted while the page was being read
        release.set()
    assert await load.cached("k", compute) == 2


async def test_heavy_reads_run_a_few_at_a_time_and_too_many_waiting_are_turned_away() -> None:
    load, release = Load(slots=2, waiting=3), anyio.Event()
    running, most = [0], [0]

    async def compute() -> None:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await release.wait()
        running[0] -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(load.heavy, compute)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(Busy):
            await load.heavy(compute)
        release.set()
    assert most[0] == 2


async def test_an_error_is_shared_not_cached() -> None:
    load, calls = Load(), []

    async def compute() -> int:
        calls.append(1)
        if len(calls) == 1:
            await anyio.sleep(0.02)
            raise RuntimeError("database hiccup")
        return 7

    outcomes: list[object] = []

    async def ask() -> None:
        try:
            outcomes.append(await load.cached("k", compute))
        except RuntimeError as exc:
            outcomes.append(str(exc))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(ask)
    assert outcomes == ["database hiccup"] * 3
    assert await load.cached("k", compute) == 7


async def test_concurrent_troubleshooting_pages_read_the_groups_once(
    client: httpx.AsyncClient,
    bus: CommandBus,
    pool: AsyncConnectionPool,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await park(pool, schema, await send(bus, 3))
    real, calls = console.error_groups, []

    async def counting(*args: object, **kwargs: object) -> console.ErrorGroups:
        calls.append(1)
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(console, "error_groups", counting)
    statuses: list[int] = []

    async def visit() -> None:
        statuses.append((await client.get("/tsq")).status_code)

    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(visit)
    assert statuses == [200] * 30
    assert len(calls) == 1


async def test_an_action_makes_the_next_page_fresh(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await send(bus, 3)
    await park(pool, schema, ids)
    page = await client.get("/tsq", params={"domain": "orders"})
    assert "3 matching" in page.text
    form = {"csrf_token": csrf(page), "domain": "orders", "all": "1", "action": "retry"}
    confirm = await client.post("/tsq/confirm", data=form)
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', confirm.text))
    done = await client.post("/tsq/apply", data={**hidden, "csrf_token": csrf(confirm)})
    assert 'data-count="3"' in done.text
    page = await client.get("/tsq", params={"domain": "orders"})
    assert "0 matching" in page.text


async def test_the_groups_say_at_least_when_their_scan_is_full(
    client: httpx.AsyncClient,
    bus: CommandBus,
    pool: AsyncConnectionPool,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await park(pool, schema, await send(bus, 8))
    monkeypatch.setattr(pages, "GROUP_SCAN", 5)
    page = await client.get("/tsq")
    assert "at least 5 matching" in page.text
    assert 'id="groups-bound"' in page.text and "5 most recently parked" in page.text
    monkeypatch.setattr(pages, "GROUP_SCAN", 50)
    page = await client.get("/tsq", params={"type": "Charge"})
    assert "8 matching" in page.text and "at least" not in page.text
    assert 'id="groups-bound"' not in page.text


async def test_too_many_waiting_heavy_pages_get_a_503_with_the_headers(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    app.state.console.load = Load(slots=1, waiting=0)
    for path in ("/", "/tsq", "/commands"):
        response = await client.get(path)
        assert response.status_code == 503, path
        assert response.headers["retry-after"] == "2"
        assert "content-security-policy" in response.headers
    assert (await client.get("/workers")).status_code == 200  # light pages still answer
