"""Every page renders from a real database, read-only for anonymous visitors."""

from __future__ import annotations

import re
import uuid

import httpx
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette

from commandbus import BatchCommand, CommandBus
from core.helpers import execute
from web.helpers import csrf, park, send


async def test_every_page_renders(
    viewer: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
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
        response = await viewer.get(path)
        assert response.status_code == 200, (path, response.text[-2000:])


async def test_batch_process_and_parked_reply_pages(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    batch = await bus.create_batch(
        "orders",
        [BatchCommand("Charge", uuid.uuid4(), {"n": n}) for n in range(4)],
        name="<i>nightly</i>",
    )
    page = await client.get("/batches")
    assert str(batch.batch_id) in page.text and "&lt;i&gt;nightly&lt;/i&gt;" in page.text
    page = await client.get(f"/batches/orders/{batch.batch_id}")
    assert page.status_code == 200
    assert 'max="4" value="0"' in page.text  # progress: nothing finished yet
    assert (await client.get(f"/batches/orders/{uuid.uuid4()}")).status_code == 404

    process_id, command_id = uuid.uuid4(), uuid.uuid4()
    await execute(
        pool,
        schema,
        "INSERT INTO {schema}.processes (process_id, domain, process_type, status, "
        "current_step, state, completed_steps) VALUES (%s, 'orders', 'Checkout', "
        "'COMPENSATED', 'release', '{{}}', '[\"reserve\"]')",
        [process_id],
    )
    await execute(
        pool,
        schema,
        "INSERT INTO {schema}.process_audit (process_id, entry_type, step, command_domain, "
        "command_id, command_type, sent_at, reply_outcome, received_at, error_message) "
        "VALUES (%s, 'STEP', 'charge', 'orders', %s, 'Charge', now(), 'FAILED', now(), "
        "'<b>declined</b>'), (%s, 'COMPENSATION', 'release', 'orders', %s, 'Release', now(), "
        "'SUCCESS', now(), NULL)",
        [process_id, command_id, process_id, uuid.uuid4()],
    )
    page = await client.get("/processes", params={"status": "COMPENSATED"})
    assert str(process_id) in page.text
    page = await client.get(f"/processes/{process_id}")
    assert page.status_code == 200
    assert 'class="event compensation"' in page.text
    assert "&lt;b&gt;declined&lt;/b&gt;" in page.text
    assert (await client.get(f"/processes/{uuid.uuid4()}")).status_code == 404

    for n in range(2):
        await execute(
            pool,
            schema,
            "INSERT INTO {schema}.parked_replies (queue, domain, command_id, command_type, "
            "outcome, read_ct, reason_code, reason) VALUES ('replies', 'orders', %s, "
            "'Charge', 'SUCCESS', 1, 'UNKNOWN_PROCESS', %s)",
            [uuid.uuid4(), f"no process <{n}>"],
        )
    page = await client.get("/replies")
    assert "no process &lt;0&gt;" in page.text
    ids = [int(i) for i in re.findall(r'action="/replies/(\d+)/retry"', page.text)]
    assert len(ids) == 2
    token = csrf(page)
    # A click asks for confirmation and a reason; nothing changes until then.
    asked = await client.post(f"/replies/{ids[0]}/retry", data={"csrf_token": token})
    assert asked.status_code == 200 and 'id="reply-confirm"' in asked.text
    assert 'name="reason"' in asked.text and "required" in asked.text
    no_reason = await client.post(
        f"/replies/{ids[1]}/discard", data={"csrf_token": token, "confirmed": "yes"}
    )
    assert no_reason.status_code == 400
    rows = await execute(pool, schema, "SELECT count(*) FROM {schema}.parked_replies")
    assert rows == [(2,)]
    retried = await client.post(
        f"/replies/{ids[0]}/retry",
        data={"csrf_token": csrf(asked), "confirmed": "yes", "reason": "router fixed"},
    )
    assert retried.status_code == 303
    discarded = await client.post(
        f"/replies/{ids[1]}/discard",
        data={"csrf_token": token, "confirmed": "yes", "reason": "stale"},
    )
    assert discarded.status_code == 303
    rows = await execute(pool, schema, "SELECT count(*) FROM {schema}.parked_replies")
    assert rows == [(0,)]
    queued = await execute(pool, schema, "SELECT count(*) FROM {schema}.replies")
    assert queued == [(1,)]
    audit = await execute(
        pool,
        schema,
        "SELECT event_type, details->>'operator', details->>'reason' FROM {schema}.audit "
        "WHERE event_type LIKE 'OPERATOR_REPLY_%%' ORDER BY audit_id",
    )
    assert [(event, reason) for event, _, reason in audit] == [
        ("OPERATOR_REPLY_RETRY", "router fixed"),
        ("OPERATOR_REPLY_DISCARD", "stale"),
    ]
    assert {operator for _, operator, _ in audit} == {"alice"}  # the signed-in operator


async def test_command_search_filters_and_bad_input(
    viewer: httpx.AsyncClient, bus: CommandBus
) -> None:
    anon = viewer
    ids = await send(bus, 3, command_type="Charge")
    other = await send(bus, 1, domain="billing", command_type="Invoice")
    page = await anon.get("/commands", params={"type": "Invoice"})
    assert str(other[0]) in page.text and str(ids[0]) not in page.text
    page = await anon.get("/commands", params={"id": str(ids[1])})
    assert str(ids[1]) in page.text and str(ids[0]) not in page.text
    page = await anon.get("/commands", params={"status": "PENDING", "domain": "orders"})
    assert all(str(i) in page.text for i in ids)
    for bad in ({"id": "nope"}, {"status": "WHATEVER"}, {"after_time": "yesterday"}):
        response = await anon.get("/commands", params=bad)
        assert response.status_code == 400, bad
    assert (await anon.get(f"/commands/orders/{uuid.uuid4()}")).status_code == 404
    assert (await anon.get("/commands/orders/not-a-uuid")).status_code == 400


async def test_links_percent_encode_each_path_part(app: Starlette) -> None:
    from starlette.requests import Request

    from commandbus_web.console import url_builder

    scope = {"type": "http", "app": app, "root_path": "/ops", "path": "/ops/", "headers": []}
    request = Request(scope)
    url = url_builder(request)
    command_id = "6f1c0e1a-1b2c-4d3e-8f40-5a6b7c8d9e0f"
    assert url("command", domain="a/b?c#d %", command_id=command_id) == (
        f"/ops/commands/a%2Fb%3Fc%23d%20%25/{command_id}"
    )
    assert url("tsq", query={"domain": "a&b", "type": None}) == "/ops/tsq?domain=a%26b"


async def test_a_completed_commands_page_labels_an_earlier_error_as_such(
    viewer: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    completed, failed = await send(bus, 2)
    for command_id, status in ((completed, "COMPLETED"), (failed, "FAILED")):
        await execute(
            pool,
            schema,
            "UPDATE {schema}.commands SET status = %s, attempts = 2, vt = NULL, "
            "last_error_type = 'TransientCommandError', last_error_code = 'TIMEOUT', "
            "last_error_message = 'gateway timeout', last_error_traceback = 'Traceback ...' "
            "WHERE command_id = %s",
            [status, command_id],
        )
    page = await viewer.get(f"/commands/orders/{completed}")
    assert 'id="earlier-error">Error of an earlier attempt' in page.text
    assert "the command is now COMPLETED" in page.text
    assert "Traceback of that attempt" in page.text and "<h2>Last error</h2>" not in page.text
    page = await viewer.get(f"/commands/orders/{failed}")
    assert "<h2>Last error</h2>" in page.text and "earlier attempt" not in page.text
