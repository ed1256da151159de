"""Paused is a state the console shows and changes: an operator pauses and resumes a domain
with a reason (POST, CSRF, operators only); the overview says who paused it, when and why."""

from __future__ import annotations

import logging

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, list_paused, pause_domain
from web.conftest import OPERATOR
from web.helpers import csrf, send


async def test_an_operator_pauses_and_resumes_a_domain(
    client: httpx.AsyncClient,
    bus: CommandBus,
    pool: AsyncConnectionPool,
    schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "commandbus")
    await send(bus, 2)
    overview = await client.get("/")
    assert 'class="pause-link" href="/domains/orders/pause"' in overview.text
    form_page = await client.get("/domains/orders/pause")
    assert form_page.status_code == 200 and 'id="domain-form"' in form_page.text
    token = csrf(form_page)
    # A reason is required; without the token nothing happens.
    assert (
        await client.post("/domains/orders/pause", data={"csrf_token": token})
    ).status_code == 400
    assert (await client.post("/domains/orders/pause", data={"reason": "x"})).status_code == 403
    assert await list_paused(pool, schema=schema) == []

    done = await client.post(
        "/domains/orders/pause", data={"csrf_token": token, "reason": "payment gateway down"}
    )
    assert done.status_code == 303 and done.headers["location"] == "/?paused=orders"
    (paused,) = await list_paused(pool, schema=schema)
    assert (paused.domain, paused.operator, paused.reason) == (
        "orders",
        OPERATOR,
        "payment gateway down",
    )
    overview = await client.get(done.headers["location"])
    assert 'id="domain-done"' in overview.text
    row = overview.text.split('data-domain="orders"')[1].split("</tr>")[0]
    assert "PAUSED" in row and f"by {OPERATOR}" in row and "payment gateway down" in row
    assert 'class="resume-link"' in row
    assert 'id="paused-total">1<' in overview.text

    resume_page = await client.get("/domains/orders/resume")
    assert "payment gateway down" in resume_page.text
    done = await client.post(
        "/domains/orders/resume",
        data={"csrf_token": csrf(resume_page), "reason": "gateway back"},
    )
    assert done.status_code == 303
    assert await list_paused(pool, schema=schema) == []
    assert f"domain orders resumed by {OPERATOR}: gateway back" in caplog.text
    assert f"domain orders paused by {OPERATOR}: payment gateway down" in caplog.text
    row = (await client.get("/")).text.split('data-domain="orders"')[1].split("</tr>")[0]
    assert "PAUSED" not in row


async def test_viewers_see_the_pause_but_cannot_change_it(
    viewer: httpx.AsyncClient, pool: AsyncConnectionPool, schema: str
) -> None:
    await pause_domain(pool, "reports", operator="ops", reason="month end", schema=schema)
    overview = await viewer.get("/")
    row = overview.text.split('data-domain="reports"')[1].split("</tr>")[0]
    assert "PAUSED" in row and "month end" in row and "resume-link" not in row
    assert (await viewer.get("/domains/reports/resume")).status_code == 403
    page = await viewer.get("/tsq")  # a page with a form: the viewer's own token
    refused = await viewer.post(
        "/domains/reports/resume", data={"csrf_token": csrf(page), "reason": "x"}
    )
    assert refused.status_code == 403
    assert [p.domain for p in await list_paused(pool, schema=schema)] == ["reports"]
