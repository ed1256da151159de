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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "CsrfError",
    "SecurityHeadersMiddleware",
    "Tokens",
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
    """Signed double-submit CSRF tokens.

    The browser holds a random value in a cookie (HttpOnly, SameSite=Strict); each form
    carries ``value.signature`` (HMAC of the value with the app's secret). A POST is
    accepted only if the form's token is correctly signed and its value equals the
    cookie's: another site can neither read the cookie nor forge the signature.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, value: str) -> str:
        mac = hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()
        return f"{value}.{mac}"

    def cookie_value(self, request: Request) -> tuple[str, bool]:
        """The browser's token value, or a new one (True: set the cookie)."""
        value = request.cookies.get(CSRF_COOKIE, "")
        if re.fullmatch(r"[0-9a-f]{64}", value):
            return value, False
        return secrets.token_hex(32), True

    def check(self, request: Request, form: dict[str, list[str]]) -> None:
        _check_origin(request)
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = (form.get(CSRF_FIELD) or [""])[0] or request.headers.get("x-csrf-token", "")
        value, _, _mac = sent.partition(".")
        if not cookie or not value:
            raise CsrfError("missing CSRF token")
        if not hmac.compare_digest(self.sign(value), sent):
            raise CsrfError("bad CSRF token signature")
        if not hmac.compare_digest(value, cookie):
            raise CsrfError("CSRF token does not match the cookie")


def _check_origin(request: Request) -> None:
    """Browsers send Origin on POST: it must be this host (defence in depth)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        if origin == "null":
            raise CsrfError("opaque origin")
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise CsrfError("cross-origin request")


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
