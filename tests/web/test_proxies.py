"""Behind a TLS-terminating proxy: forwarded headers believed from the trusted proxy only;
the CSRF cookie is ``__Host-`` and ``Secure`` under https, and forms still work."""

from __future__ import annotations

import logging

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus
from commandbus_web import BasicAuth, create_app
from commandbus_web.proxies import Addresses
from web.conftest import OPERATOR, basic
from web.helpers import csrf, park, send

HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ops.example.com"}


def _client(app: object, peer: str, base_url: str = "http://console.internal") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 4321))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=base_url, headers=basic())


async def test_https_through_the_trusted_proxy_makes_the_cookie_host_only_and_secure(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, password_hash: str
) -> None:
    ids = await send(bus, 1)
    await park(pool, schema, ids)
    app = create_app(
        pool,
        schema=schema,
        auth=BasicAuth(OPERATOR, password_hash),
        trusted_proxies=["10.1.0.0/16"],
    )
    async with _client(app, "10.1.2.3") as proxy:
        page = await proxy.get("/tsq", headers=HTTPS)
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("__Host-commandbus_csrf=")
        assert "Secure" in cookie and "Path=/" in cookie and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        # The form posts back through the proxy, from the public origin.
        value = cookie.split(";")[0].split("=", 1)[1]
        response = await proxy.post(
            "/tsq/confirm",
            data={"csrf_token": csrf(page), "id": str(ids[0]), "action": "retry"},
            headers={**HTTPS, "Origin": "https://ops.example.com"},
            cookies={"__Host-commandbus_csrf": value},
        )
        assert response.status_code == 200, response.text[-500:]
        # The same origin over plain http is another origin.
        response = await proxy.post(
            "/tsq/confirm",
            data={"csrf_token": csrf(page), "id": str(ids[0]), "action": "retry"},
            headers={**HTTPS, "Origin": "http://ops.example.com"},
            cookies={"__Host-commandbus_csrf": value},
        )
        assert response.status_code == 403


async def test_forwarded_headers_from_anyone_else_are_ignored(
    pool: AsyncConnectionPool, schema: str, password_hash: str
) -> None:
    app = create_app(
        pool, schema=schema, auth=BasicAuth(OPERATOR, password_hash), trusted_proxies=["10.1.2.3"]
    )
    async with _client(app, "198.51.100.1") as stranger:
        page = await stranger.get("/tsq", headers=HTTPS)
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("commandbus_csrf=") and "Secure" not in cookie


async def test_a_console_served_over_https_sets_a_host_only_cookie(
    pool: AsyncConnectionPool, schema: str, password_hash: str
) -> None:
    app = create_app(pool, schema=schema, auth=BasicAuth(OPERATOR, password_hash))
    async with _client(app, "127.0.0.1", base_url="https://console.test") as c:
        page = await c.get("/")
        assert page.headers["set-cookie"].startswith("__Host-commandbus_csrf=")
        assert "Secure" in page.headers["set-cookie"]


async def test_the_client_address_comes_from_the_trusted_proxy_only(
    pool: AsyncConnectionPool, schema: str, password_hash: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "commandbus.web")
    app = create_app(
        pool, schema=schema, auth=BasicAuth(OPERATOR, password_hash), trusted_proxies=["10.1.2.3"]
    )
    wrong = basic(password="a-wrong-password")
    async with _client(app, "10.1.2.3") as proxy:
        # The client the proxy saw, left of the proxies (a visitor may prepend anything).
        chain = {"X-Forwarded-For": "6.6.6.6, 203.0.113.5, 10.1.2.3"}
        assert (await proxy.get("/", headers={**wrong, **chain})).status_code == 401
    async with _client(app, "198.51.100.1") as stranger:
        forged = {"X-Forwarded-For": "192.0.2.77"}
        assert (await stranger.get("/", headers={**wrong, **forged})).status_code == 401
    assert "sign-in failed from 203.0.113.5" in caplog.text
    assert "sign-in failed from 198.51.100.1" in caplog.text
    assert "192.0.2.77" not in caplog.text and "6.6.6.6" not in caplog.text


def test_addresses_match_ips_and_networks() -> None:
    trusted = Addresses(["10.0.0.0/8", "::1", "192.168.1.5"])
    assert "10.200.3.4" in trusted and "::1" in trusted and "192.168.1.5" in trusted
    assert "::ffff:10.1.1.1" in trusted  # IPv4 seen through an IPv6 socket
    assert "192.168.1.6" not in trusted and "testclient" not in trusted and None not in trusted
    with pytest.raises(ValueError, match="not an IP address"):
        Addresses(["proxy.local"])
