"""Who the operator is: a pluggable ``auth`` callable and two built-ins.

An auth callable takes the Starlette request and returns the operator's identity (a
non-empty string, recorded in the audit trail) or None (anonymous: the console is then
read-only). It may be a plain or an ``async`` function.

Built-ins:

* :func:`basic_auth_from_env` / :class:`BasicAuth`: HTTP Basic, one user whose password
  is kept hashed (PBKDF2-SHA256 or SHA-256) and compared in constant time.
* :class:`TrustedHeaderAuth`: the identity set by a reverse proxy in a header (e.g.
  ``X-Forwarded-User``), off unless configured, optionally only from given proxy addresses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Collection

from starlette.requests import Request

__all__ = [
    "Auth",
    "BasicAuth",
    "TrustedHeaderAuth",
    "basic_auth_from_env",
    "hash_password",
]

#: ``auth(request) -> operator or None``, plain or async.
Auth = Callable[[Request], "str | Awaitable[str | None] | None"]

_PBKDF2 = "pbkdf2_sha256"
_ITERATIONS = 200_000


def hash_password(password: str, *, iterations: int = _ITERATIONS) -> str:
    """A ``pbkdf2_sha256$iterations$salt$hash`` string for ``COMMANDBUS_WEB_PASSWORD_HASH``."""
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), iterations)
    return f"{_PBKDF2}${iterations}${salt}${digest.hex()}"


class BasicAuth:
    """HTTP Basic authentication of one operator.

    ``password_hash`` is what :func:`hash_password` returns, or ``sha256$<hex>``. The
    password itself is never kept. A verified Authorization header is remembered (by its
    SHA-256) so that a slow PBKDF2 runs once per browser session, not on every request.
    """

    realm = "commandbus console"

    def __init__(self, username: str, password_hash: str) -> None:
        if not username or ":" in username:
            raise ValueError("the Basic auth user name must be non-empty, without ':'")
        self.username = username
        self._verify = _verifier(password_hash)
        self._known: dict[bytes, bool] = {}

    def __call__(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None
        key = hashlib.sha256(value.encode()).digest()
        ok = self._known.get(key)
        if ok is None:
            ok = self._check(value)
            if len(self._known) > 1000:
                self._known.clear()
            self._known[key] = ok
        return self.username if ok else None

    def _check(self, value: str) -> bool:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        # Both compared in full whatever the outcome of the first: no timing hint.
        user_ok = hmac.compare_digest(
            hashlib.sha256(user.encode()).digest(), hashlib.sha256(self.username.encode()).digest()
        )
        password_ok = self._verify(password)
        return user_ok and password_ok


def _verifier(password_hash: str) -> Callable[[str], bool]:
    parts = password_hash.split("$")
    if len(parts) == 4 and parts[0] == _PBKDF2:
        iterations, salt, expected = int(parts[1]), bytes.fromhex(parts[2]), bytes.fromhex(parts[3])

        def pbkdf2(password: str) -> bool:
            got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
            return hmac.compare_digest(got, expected)

        return pbkdf2
    if len(parts) == 2 and parts[0] == "sha256":
        want = bytes.fromhex(parts[1])

        def sha256(password: str) -> bool:
            return hmac.compare_digest(hashlib.sha256(password.encode()).digest(), want)

        return sha256
    raise ValueError(
        "the password hash must be 'pbkdf2_sha256$iterations$salt$hash' "
        "(commandbus web --hash-password) or 'sha256$hex'"
    )


def basic_auth_from_env(environ: dict[str, str] | None = None) -> BasicAuth | None:
    """HTTP Basic from ``COMMANDBUS_WEB_USER`` and ``COMMANDBUS_WEB_PASSWORD_HASH`` (or
    ``COMMANDBUS_WEB_PASSWORD``, hashed at once and not kept); None when no user is set."""
    env = os.environ if environ is None else environ
    user = env.get("COMMANDBUS_WEB_USER")
    if not user:
        return None
    hashed = env.get("COMMANDBUS_WEB_PASSWORD_HASH")
    if not hashed:
        plain = env.get("COMMANDBUS_WEB_PASSWORD")
        if not plain:
            raise ValueError(
                "COMMANDBUS_WEB_USER is set: set COMMANDBUS_WEB_PASSWORD_HASH "
                "(or COMMANDBUS_WEB_PASSWORD) too"
            )
        hashed = "sha256$" + hashlib.sha256(plain.encode()).hexdigest()
    return BasicAuth(user, hashed)


class TrustedHeaderAuth:
    """The operator named by a reverse proxy in ``header`` (e.g. ``X-Forwarded-User``).

    Use only behind a proxy that sets the header itself and strips it from clients'
    requests. ``trusted_proxies``: client addresses allowed to set it (others are
    anonymous); None trusts every client that reaches the app.
    """

    def __init__(self, header: str, *, trusted_proxies: Collection[str] | None = None) -> None:
        if not header:
            raise ValueError("the trusted header's name must be non-empty")
        self.header = header
        self.trusted_proxies = None if trusted_proxies is None else frozenset(trusted_proxies)

    def __call__(self, request: Request) -> str | None:
        if self.trusted_proxies is not None:
            client = request.client.host if request.client else None
            if client not in self.trusted_proxies:
                return None
        value = request.headers.get(self.header, "").strip()
        if not value or len(value) > 200 or not value.isprintable():
            return None
        return value
