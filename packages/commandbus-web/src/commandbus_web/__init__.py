"""commandbus_web: the operator console of commandbus, an ASGI app (Starlette).

    from commandbus_web import create_app, basic_auth_from_env
    app = create_app(pool_or_dsn, auth=basic_auth_from_env())

It reads and acts through commandbus's public API only, and serves everything (htmx
included) from this package: no CDN, so it works offline and behind firewalls.
"""

from __future__ import annotations

from collections.abc import Collection

from commandbus_web.app import create_app
from commandbus_web.auth import (
    Auth,
    BasicAuth,
    TrustedHeaderAuth,
    basic_auth_from_env,
    hash_password,
)

__version__ = "0.1.0"

__all__ = [
    "Auth",
    "BasicAuth",
    "TrustedHeaderAuth",
    "__version__",
    "auth_from_options",
    "basic_auth_from_env",
    "create_app",
    "describe_auth",
    "hash_password",
]


def auth_from_options(
    *, header: str | None = None, trusted_proxies: Collection[str] | None = None
) -> Auth | None:
    """What ``commandbus web`` uses: the trusted header when given, else HTTP Basic from
    the environment, else None (read-only)."""
    if header:
        return TrustedHeaderAuth(header, trusted_proxies=trusted_proxies)
    if trusted_proxies:
        raise ValueError("--trusted-proxy needs --auth-header")
    return basic_auth_from_env()


def describe_auth(auth: Auth) -> str:
    if isinstance(auth, BasicAuth):
        return f"HTTP Basic as {auth.username!r}"
    if isinstance(auth, TrustedHeaderAuth):
        return f"trusted header {auth.header}"
    return type(auth).__name__
