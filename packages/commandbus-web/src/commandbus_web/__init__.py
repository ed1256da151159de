"""commandbus_web: the operator console of commandbus, an ASGI app (Starlette).

    from commandbus_web import create_app, basic_auth_from_env
    app = create_app(pool_or_dsn, auth=basic_auth_from_env())

It reads and acts through commandbus's public API only, and serves everything (htmx
included) from this package: no CDN, so it works offline and behind firewalls.
"""

from __future__ import annotations

from collections.abc import Collection

from commandbus_web.access import Action, Authorize, Role, User, default_authorize
from commandbus_web.app import create_app
from commandbus_web.auth import (
    Auth,
    BasicAuth,
    SignInRefused,
    SignInThrottled,
    TrustedHeaderAuth,
    basic_auth_from_env,
)
from commandbus_web.environment import environment_warnings
from commandbus_web.passwords import MIN_PASSWORD_LENGTH, hash_password

__version__ = "0.1.0"

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "Action",
    "Auth",
    "Authorize",
    "BasicAuth",
    "Role",
    "SignInRefused",
    "SignInThrottled",
    "TrustedHeaderAuth",
    "User",
    "__version__",
    "auth_from_options",
    "basic_auth_from_env",
    "create_app",
    "default_authorize",
    "describe_auth",
    "environment_warnings",
    "hash_password",
]


def auth_from_options(
    *,
    header: str | None = None,
    trusted_proxies: Collection[str] | None = None,
    trust_any_client: bool = False,
    operators: Collection[str] | None = None,
) -> Auth | None:
    """What ``commandbus web`` uses: the trusted header when given, else HTTP Basic from
    the environment, else None (read-only)."""
    if header:
        return TrustedHeaderAuth(
            header,
            trusted_proxies=trusted_proxies,
            trust_any_client=trust_any_client,
            operators=operators,
        )
    if trust_any_client or operators:
        raise ValueError("--trust-any-client and --operator go with --auth-header")
    return basic_auth_from_env()


def describe_auth(auth: Auth) -> str:
    if isinstance(auth, BasicAuth):
        return f"HTTP Basic as {', '.join(auth.accounts)}"
    if isinstance(auth, TrustedHeaderAuth):
        return f"trusted header {auth.header}"
    return type(auth).__name__
