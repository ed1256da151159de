"""Security plumbing: response headers, CSRF tokens (signed double submit), form bodies."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "CsrfError",
    "SecurityHeadersMiddleware",
    "Tokens",
    "check_origin",
    "cookie_name",
    "read_form",
    "redact",
]

log = logging.getLogger("commandbus.web")

CSRF_COOKIE = "commandbus_csrf"
CSRF_FIELD = "csrf_token"
#: A form larger than this is refused (10,000 ids fit easily).
MAX_FORM_BYTES = 2 * 1024 * 1024

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)

_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeadersMiddleware:
    """Adds CSP (no inline script), framing, sniffing and referrer headers to every response;
    pages are not cached (they show live, possibly sensitive data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS:
                    headers[name.decode()] = value.decode()
                if not static:
                    headers["cache-control"] = "no-store"
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception:
            # What the pages did not turn into a page themselves: still a plain page with
            # the headers, never the server's default (which has none).
            log.error("%s failed unexpectedly", scope.get("path"), exc_info=True)
            if started:
                raise
            await _plain_error(with_headers)


async def _plain_error(send: Send) -> None:
    body = PLAIN_ERROR.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


PLAIN_ERROR = (
    "<!doctype html><html lang=en><head><meta charset=utf-8><title>Error</title></head>"
    "<body><h1>Something went wrong</h1><p>The console failed to answer; the details are "
    "in its log.</p></body></html>"
)


class CsrfError(Exception):
    """A state-changing request without a valid CSRF token, or from another origin."""


class Tokens:
    """Signed double-submit CSRF tokens, bound to the user.

    The browser holds a random value in a cookie (HttpOnly, SameSite=Strict; under https
    named ``__Host-commandbus_csrf`` and ``Secure``, so no other site or subdomain can
    set it); each form carries ``value.signature``, an HMAC under the app's secret of the
    value *and the signed-in user's name*. A POST is accepted only if the form's token is
    correctly signed for the user who sends it and its value equals the cookie's: another
    site can neither read the cookie nor forge the signature, and a token shown to one
    user is worthless to another.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, value: str, user: str) -> str:
        message = value.encode() + b"\x00" + user.encode("utf-8", "replace")
        mac = hmac.new(self._secret, message, hashlib.sha256).hexdigest()
        return f"{value}.{mac}"

    def cookie_value(self, request: Request) -> tuple[str, bool]:
        """The browser's token value, or a new one (True: set the cookie)."""
        value = request.cookies.get(cookie_name(request), "")
        if re.fullmatch(r"[0-9a-f]{64}", value):
            return value, False
        return secrets.token_hex(32), True

    def set_cookie(self, request: Request, response: Response, value: str) -> None:
        https = request.url.scheme == "https"
        response.set_cookie(
            cookie_name(request),
            value,
            httponly=True,
            samesite="strict",
            secure=https,
            # __Host- cookies must have Path=/; over plain http the mount path scopes it.
            path="/" if https else (request.scope.get("root_path", "") or "/"),
        )

    def check(self, request: Request, form: dict[str, list[str]], user: str) -> None:
        check_origin(request)
        cookie = request.cookies.get(cookie_name(request), "")
        sent = (form.get(CSRF_FIELD) or [""])[0] or request.headers.get("x-csrf-token", "")
        value, _, _mac = sent.partition(".")
        if not cookie or not value:
            raise CsrfError("missing CSRF token")
        if not hmac.compare_digest(self.sign(value, user).encode(), sent.encode()):
            raise CsrfError("bad CSRF token signature (or a token of another user)")
        if not hmac.compare_digest(value.encode(), cookie.encode()):
            raise CsrfError("CSRF token does not match the cookie")


def cookie_name(request: Request) -> str:
    return f"__Host-{CSRF_COOKIE}" if request.url.scheme == "https" else CSRF_COOKIE


def check_origin(request: Request) -> None:
    """A POST must come from a page of this console: its Origin (scheme, host and port)
    must be this console's; a browser that sends no Origin is checked by its Referer."""
    expected = _origin(request.url.scheme, request.headers.get("host", ""))
    origin = request.headers.get("origin")
    if origin is not None:
        if origin.strip() == "null":
            raise CsrfError("opaque origin")
        got = _origin_of(origin)
        if got is None or got != expected:
            raise CsrfError(f"cross-origin request (from {origin[:100]})")
        return
    referer = request.headers.get("referer")
    if referer:
        got = _origin_of(referer)
        if got is None or got != expected:
            raise CsrfError("cross-site request (by its Referer)")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return _origin(parts.scheme, parts.netloc)


def _origin(scheme: str, netloc: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` with the default port made explicit; None if unreadable."""
    scheme = scheme.lower()
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme)


async def read_form(request: Request) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body as name -> values (bounded size)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise CsrfError("form too large")
    form: dict[str, list[str]] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        form.setdefault(name, []).append(value)
    return form


def redact(text: str, secrets_: Any) -> str:
    """``text`` with each of ``secrets_`` (non-empty strings) replaced by ``***``."""
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "***")
    return text
