"""Read-only unless signed in; CSRF on every POST; security headers; everything escaped;
the DSN's password never shown or logged."""

from __future__ import annotations

import logging

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, CommandStatus
from commandbus_web import BasicAuth, TrustedHeaderAuth, create_app
from web.conftest import OPERATOR, PASSWORD, basic
from web.helpers import XSS, csrf, park, send


async def test_security_headers_on_every_response(
    anon: httpx.AsyncClient, viewer: httpx.AsyncClient
) -> None:
    paths = ("/", "/tsq", "/static/htmx.min.js", "/nope")
    for response in [await c.get(path) for c in (anon, viewer) for path in paths]:
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


async def test_htmx_is_served_from_the_package(viewer: httpx.AsyncClient) -> None:
    anon = viewer
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


async def test_anonymous_readers_and_viewers_cannot_act(
    pool: AsyncConnectionPool,
    schema: str,
    bus: CommandBus,
    password_hash: str,
    viewer: httpx.AsyncClient,
) -> None:
    ids = await send(bus, 1)
    await park(pool, schema, ids)
    app = create_app(
        pool, schema=schema, auth=BasicAuth(OPERATOR, password_hash), anonymous_read=True
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as anon:
        page = await anon.get("/tsq")
        assert page.status_code == 200 and "read-only" in page.text
        form = {"csrf_token": csrf(page), "id": str(ids[0]), "action": "retry", "limit": "1"}
        for path in ("/tsq/confirm", "/tsq/apply"):
            response = await anon.post(path, data=form)
            assert response.status_code == 403
        wrong = await anon.post("/tsq/apply", data=form, headers=basic(password="wrong"))
        assert wrong.status_code == 403
    # A viewer, signed in, with a valid token of their own: refused too.
    page = await viewer.get("/tsq")
    form = {"csrf_token": csrf(page), "id": str(ids[0]), "action": "retry", "limit": "1"}
    for path in ("/tsq/confirm", "/tsq/apply"):
        response = await viewer.post(path, data=form)
        assert response.status_code == 403
        assert "victor (viewer) may not retry" in response.text
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
    app = create_app(dsn, auth=TrustedHeaderAuth("X-User", trusted_proxies={"127.0.0.1"}))
    caplog.set_level(logging.DEBUG)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers={"X-User": "dora"}
        ) as c:
            page = await c.get("/")
        assert page.status_code == 503
        assert secret not in page.text
        assert "Database unavailable" in page.text
        assert secret not in caplog.text
    finally:
        await app.state.console.close()


async def test_the_csrf_token_is_bound_to_the_user(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, password_hash: str
) -> None:
    """A token shown to one operator is refused from another, cookie and all."""
    ids = await send(bus, 1)
    await park(pool, schema, ids)
    auth = BasicAuth(OPERATOR, password_hash).add("bob", password_hash)
    app = create_app(pool, schema=schema, auth=auth, secret=b"k")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers=basic()
    ) as alice:
        page = await alice.get("/tsq")
        token = csrf(page)
        form = {"csrf_token": token, "id": str(ids[0]), "action": "retry"}
        cookies = dict(alice.cookies)
        assert (await alice.post("/tsq/confirm", data=form)).status_code == 200
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://t",
        headers=basic("bob", PASSWORD),
        cookies=cookies,
    ) as bob:
        refused = await bob.post("/tsq/confirm", data=form)
        assert refused.status_code == 403
        assert "another user" in refused.text


async def test_origin_is_compared_with_its_scheme_and_referer_checked_without_it(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await send(bus, 1)
    await park(pool, schema, ids)
    page = await client.get("/tsq")
    form = {"csrf_token": csrf(page), "id": str(ids[0]), "action": "retry"}
    refused = [
        {"Origin": "https://console.test"},  # same host, another scheme
        {"Origin": "http://console.test:8080"},  # another port
        {"Origin": "http://console.test.evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Referer": "https://console.test/tsq"},
        {"Referer": "http://[::1"},
    ]
    for headers in refused:
        response = await client.post("/tsq/confirm", data=form, headers=headers)
        assert response.status_code == 403, headers
    accepted = [
        {"Origin": "http://console.test"},
        {"Origin": "http://CONSOLE.test:80"},
        {"Referer": "http://console.test/tsq?domain=x"},
        {},  # neither: not a browser's cross-site request (the token still is needed)
    ]
    for headers in accepted:
        response = await client.post("/tsq/confirm", data=form, headers=headers)
        assert response.status_code == 200, (headers, response.text[-300:])
