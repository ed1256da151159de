"""Hostile input never gives a 500: a malformed request is a 400 page with the security
headers, anything unexpected a plain error page (with the headers) and a logged traceback."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

from commandbus import CommandBus
from commandbus_web import pages
from web.helpers import csrf, park, send

DEEP = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
NUL = "a\x00b"
SOME_ID = "6f1c0e1a-1b2c-4d3e-8f40-5a6b7c8d9e0f"


def _has_security_headers(response: httpx.Response) -> None:
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


BAD_GETS = [
    ("/tsq", {"after": DEEP}),
    ("/tsq", {"after": "x" * 10_000}),
    ("/tsq", {"after": base64.urlsafe_b64encode(b"[1, 2, 3]").decode()}),
    ("/tsq", {"domain": NUL}),
    ("/tsq", {"error_code": NUL}),
    ("/tsq", {"since": "not a time"}),
    ("/replies", {"offset": "\u00b2"}),
    ("/replies", {"offset": "-1"}),
    ("/replies", {"offset": "9" * 40}),
    ("/replies", {"queue": "../x"}),
    ("/commands", {"after": "2026-01-01T00:00:00+00:00~nope"}),
    ("/commands", {"after": "\u00b2~" + SOME_ID}),
    ("/commands", {"after_time": "99999-01-01"}),
    ("/commands", {"domain": "x" * 500}),
    ("/commands", {"status": NUL}),
    ("/processes", {"status": "NOPE"}),
    ("/processes", {"type": NUL}),
    ("/batches", {"domain": NUL}),
    ("/batches", {"after": "~"}),
    ("/workers", {"domain": NUL}),
    (f"/batches/orders/{SOME_ID}", {"status": "NOPE"}),
    ("/commands/orders/not-a-uuid", {}),
    ("/commands/%00/" + SOME_ID, {}),
    ("/processes/123", {}),
]


@pytest.mark.parametrize(("path", "params"), BAD_GETS)
async def test_malformed_queries_are_400_with_security_headers(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code in (400, 404), (path, params, response.text[-500:])
    _has_security_headers(response)


async def test_malformed_forms_are_400_with_security_headers(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await send(bus, 1)
    await park(pool, schema, ids)
    page = await client.get("/tsq")
    token = csrf(page)
    base = {"csrf_token": token, "action": "complete", "id": str(ids[0])}
    for extra in (
        {"limit": "\u00b2"},
        {"limit": "9" * 40},
        {"limit": "1", "result": "[" * 100_000},
        {"limit": "1", "result": "{" * 100_000},
        {"limit": "1", "result": '{"a": "\\ud800"}'},
        {"limit": "1", "action": NUL},
        {"limit": "1", "id": "nope"},
        {"limit": "1", "reason": NUL},
    ):
        response = await client.post("/tsq/apply", data={**base, **extra})
        assert response.status_code == 400, (extra, response.text[-500:])
        _has_security_headers(response)
    for form in ({"csrf_token": token, "action": "retry", "until": "\u00b2"},):
        response = await client.post("/tsq/confirm", data={**form, "all": "1", "domain": "d"})
        assert response.status_code == 400, response.text[-500:]
        _has_security_headers(response)


async def test_an_unexpected_failure_is_a_plain_page_with_headers(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(c: object, request: Request) -> Response:
        raise RuntimeError("secret internals /srv/app/x.py")

    monkeypatch.setattr(pages, "workers", broken)
    caplog.set_level(logging.ERROR, "commandbus.web")
    # The route was bound at create_app time: the app under test is made anew.
    from commandbus_web import create_app

    app = client._transport.app  # type: ignore[attr-defined]
    console = app.state.console
    fresh = create_app(
        await console.pool(), schema=console.schema, auth=console.auth, secret=b"test-secret"
    )
    transport = httpx.ASGITransport(app=fresh)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://console.test", headers=client.headers
    ) as c:
        response = await c.get("/workers")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert "Something went wrong" in response.text
    _has_security_headers(response)
    assert "secret internals" in caplog.text  # the traceback goes to the log


async def test_a_failure_outside_the_pages_still_gets_the_headers() -> None:
    from commandbus_web.security import SecurityHeadersMiddleware

    async def app(scope: object, receive: object, send: object) -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=SecurityHeadersMiddleware(app), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/")
    assert response.status_code == 500
    _has_security_headers(response)
