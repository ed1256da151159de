"""Cancelling a pending command from its console page: the operator signed in gives a
reason, the command ends CANCELED with an audit event naming them; a visitor cannot."""

from __future__ import annotations

import httpx

from commandbus import CommandBus, CommandStatus
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
