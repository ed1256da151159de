"""Cancelling a pending command from its console page: the operator signed in gives a
reason, the command ends CANCELED with an audit event naming them; a visitor cannot."""

from __future__ import annotations

import asyncio

import httpx
from psycopg_pool import AsyncConnectionPool

from commandbus import Command, CommandBus, CommandStatus, HandlerContext, HandlerRegistry
from core.helpers import make_worker, running, wait_for_status
from web.conftest import OPERATOR
from web.helpers import csrf, send


async def test_an_operator_cancels_a_pending_command_from_its_page(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, bus: CommandBus
) -> None:
    (command_id,) = await send(bus, 1)
    path = f"/commands/orders/{command_id}"
    page = await client.get(path)
    assert 'id="cancel-command"' in page.text
    # A visitor sees no form to use, and a POST without a session is refused.
    refused = await anon.post(f"{path}/cancel", data={"reason": "x"})
    assert refused.status_code in (401, 403)
    # No CSRF token: refused, nothing changes.
    assert (await client.post(f"{path}/cancel", data={"reason": "x"})).status_code == 403
    meta = await bus.get_command("orders", command_id)
    assert meta is not None and meta.status == CommandStatus.PENDING

    done = await client.post(
        f"{path}/cancel", data={"csrf_token": csrf(page), "reason": "customer withdrew"}
    )
    assert done.status_code == 303 and done.headers["location"].endswith("?cancel=CANCELED")
    meta = await bus.get_command("orders", command_id)
    assert meta is not None and meta.status == CommandStatus.CANCELED
    (event,) = [
        e
        for e in await bus.get_audit_trail(command_id, domain="orders")
        if e.event_type == "OPERATOR_CANCEL"
    ]
    assert event.details == {"operator": OPERATOR, "reason": "customer withdrew"}
    after = await client.get(done.headers["location"])
    assert 'id="cancel-done"' in after.text and 'id="cancel-command"' not in after.text


async def test_an_operator_cancels_a_running_command_found_in_the_list(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    started = asyncio.Event()

    async def slow(command: Command, ctx: HandlerContext) -> None:
        started.set()
        await asyncio.sleep(60)

    registry = HandlerRegistry()
    registry.register("orders", "Charge", slow)
    async with running(make_worker(pool, schema, registry)):
        (command_id,) = await send(bus, 1)
        await asyncio.wait_for(started.wait(), 10)
        listing = await client.get(
            "/commands", params={"domain": "orders", "status": "IN_PROGRESS"}
        )
        link = f'href="/commands/orders/{command_id}#cancel-command">cancel…</a>'
        assert link in listing.text
        path = f"/commands/orders/{command_id}"
        page = await client.get(path)
        assert "Ask its worker to cancel" in page.text
        refused = await client.post(f"{path}/cancel", data={"csrf_token": csrf(page)})
        assert refused.status_code == 400 and "needs a reason" in refused.text
        done = await client.post(
            f"{path}/cancel", data={"csrf_token": csrf(page), "reason": "stuck on a lock"}
        )
        assert done.headers["location"].endswith("?cancel=IN_PROGRESS")
        await wait_for_status(bus, "orders", command_id, CommandStatus.CANCELED)
    (event,) = [
        e
        for e in await bus.get_audit_trail(command_id, domain="orders")
        if e.event_type == "OPERATOR_CANCEL"
    ]
    assert event.details["operator"] == OPERATOR
    assert event.details["reason"] == "stuck on a lock"
