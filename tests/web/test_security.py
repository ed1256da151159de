"""Read-only unless signed in; CSRF on every POST; security headers; everything escaped;
the DSN's password never shown or logged."""

from __future__ import annotations

import logging

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from commandbus import CommandBus, CommandStatus
from commandbus_web import BasicAuth, TrustedHeaderAuth, basic_auth_from_env, create_app
from web.conftest import OPERATOR, basic
from web.helpers import XSS, csrf, park, send


async def test_security_headers_on_every_response(anon: httpx.AsyncClient) -> None:
    for path in ("/", "/tsq", "/static/htmx.min.js", "/nope"):
        response = await anon.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


async def test_htmx_is_served_from_the_package(anon: httpx.AsyncClient) -> None:
    page = await anon.get("/")
    assert '<script src="/static/htmx.min.js"' in page.text
    assert "<script>" not in page.text  # no inline script anywhere
    js = await anon.get("/static/htmx.min.js")
    assert js.status_code == 200 and "htmx" in js.text


async def test_script_bearing_data_is_escaped_everywhere(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await send(bus, 1, command_type="Charge", note=XSS)
    await park(pool, schema, ids, error_code="X<script>", message=XSS, traceback=XSS)
    pages = [
        await client.get(f"/commands/orders/{ids[0]}"),
        await client.get("/tsq"),
        await client.get("/commands"),
        await client.get("/tsq", params={"error_code": "X<script>"}),
    ]
    for page in pages:
        assert page.status_code == 200
        assert "<script>window" not in page.text
        assert "<img src=x" not in page.text
    detail = pages[0].text
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in detail  # data, message, traceback
    assert detail.count("&lt;script&gt;window.__xss") >= 3


async def test_anonymous_visitors_cannot_act(
    anon: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await send(bus, 1)
    await park(pool, schema, ids)
    page = await anon.get("/tsq")
    form = {"csrf_token": csrf(page), "id": str(ids[0]), "action": "retry", "limit": "1"}
    for path in ("/tsq/confirm", "/tsq/apply"):
        response = await anon.post(path, data=form)
        assert response.status_code == 403
    wrong = await anon.post("/tsq/apply", data=form, headers=basic(password="wrong"))
    assert wrong.status_code == 403
    meta = await bus.get_command("orders", ids[0])
    assert meta is not None and meta.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE


async def test_posts_without_a_valid_csrf_token_are_refused(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await send(bus, 1)
    await park(pool, schema, ids)
    page = await client.get("/tsq")
    good = csrf(page)
    base = {"id": str(ids[0]), "action": "retry", "limit": "1"}
    value, _, mac = good.partition(".")
    forged = [
        {},  # no token
        {"csrf_token": value + ".0" * 32},  # unsigned
        {"csrf_token": "a" * 64 + "." + mac},  # signature of another value
    ]
    for extra in forged:
        response = await client.post("/tsq/apply", data={**base, **extra})
        assert response.status_code == 403, extra
    # A valid token with another site's Origin: refused too.
    response = await client.post(
        "/tsq/apply",
        data={**base, "csrf_token": good},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    # Without the cookie (a cross-site form cannot send a SameSite=Strict cookie).
    client.cookies.clear()
    response = await client.post("/tsq/apply", data={**base, "csrf_token": good})
    assert response.status_code == 403
    meta = await bus.get_command("orders", ids[0])
    assert meta is not None and meta.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE


async def test_state_changes_are_post_only(client: httpx.AsyncClient) -> None:
    for path in ("/tsq/confirm", "/tsq/apply", "/replies/1/retry"):
        response = await client.get(path)
        assert response.status_code == 405


async def test_basic_auth_login_page_asks_the_browser(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/login")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic realm=")
    signed = await anon.get("/login", headers=basic(), follow_redirects=False)
    assert signed.status_code == 303
    page = await anon.get("/", headers=basic())
    assert f'id="operator">{OPERATOR}<' in page.text


def test_basic_auth_from_the_environment() -> None:
    assert basic_auth_from_env({}) is None
    auth = basic_auth_from_env({"COMMANDBUS_WEB_USER": "bob", "COMMANDBUS_WEB_PASSWORD": "pw"})
    assert isinstance(auth, BasicAuth)
    good = _request(basic("bob", "pw"))
    assert auth(good) == "bob"
    assert auth(_request(basic("bob", "nope"))) is None
    assert auth(_request(basic("eve", "pw"))) is None
    assert auth(_request({"Authorization": "Basic !!!"})) is None
    with pytest.raises(ValueError):
        basic_auth_from_env({"COMMANDBUS_WEB_USER": "bob"})


def test_trusted_header_only_from_trusted_proxies() -> None:
    auth = TrustedHeaderAuth("X-Forwarded-User", trusted_proxies={"10.0.0.1"})
    assert auth(_request({"X-Forwarded-User": "carol"}, client="10.0.0.1")) == "carol"
    assert auth(_request({"X-Forwarded-User": "carol"}, client="10.0.0.2")) is None
    assert auth(_request({}, client="10.0.0.1")) is None
    anyone = TrustedHeaderAuth("X-Forwarded-User")
    assert anyone(_request({"X-Forwarded-User": "dave"})) == "dave"


async def test_trusted_header_operator_goes_to_the_audit(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    app = create_app(pool, schema=schema, auth=TrustedHeaderAuth("X-Forwarded-User"))
    ids = await send(bus, 1)
    await park(pool, schema, ids)
    transport = httpx.ASGITransport(app=app)
    headers = {"X-Forwarded-User": "proxy-carol"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        page = await c.get("/tsq")
        confirm = await c.post(
            "/tsq/confirm", data={"csrf_token": csrf(page), "id": str(ids[0]), "action": "retry"}
        )
        assert 'data-count="1"' in confirm.text
        done = await c.post(
            "/tsq/apply",
            data={"csrf_token": csrf(page), "id": str(ids[0]), "action": "retry", "limit": "1"},
        )
        assert done.status_code == 200, done.text
    trail = await bus.get_audit_trail(ids[0])
    assert [e.details["operator"] for e in trail if e.event_type == "OPERATOR_RETRY"] == [
        "proxy-carol"
    ]


async def test_no_auth_means_read_only(pool: AsyncConnectionPool, schema: str) -> None:
    app = create_app(pool, schema=schema)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=basic()) as c:
        page = await c.get("/tsq")
        assert "read-only" in page.text
        response = await c.post("/tsq/confirm", data={"csrf_token": csrf(page)})
        assert response.status_code == 403


async def test_the_dsn_password_is_never_shown_nor_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "Hunter2-very-secret"
    dsn = f"postgresql://someone:{secret}@127.0.0.1:1/nodb?connect_timeout=1"
    app = create_app(dsn, auth=TrustedHeaderAuth("X-User"))
    caplog.set_level(logging.DEBUG)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            page = await c.get("/")
        assert page.status_code == 503
        assert secret not in page.text
        assert "Database unavailable" in page.text
        assert secret not in caplog.text
    finally:
        await app.state.console.close()


def _request(headers: dict[str, str], *, client: str = "127.0.0.1") -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (client, 1234),
    }
    return Request(scope)
