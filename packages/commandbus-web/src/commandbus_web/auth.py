"""Who the visitor is: a pluggable ``auth`` callable and two built-ins.

An auth callable takes the Starlette request and returns the signed-in :class:`User` (a
plain string is an operator of that name) or None (not signed in). It may be a plain or an
``async`` function. It may raise :class:`SignInRefused` (the request is refused with a
400) or :class:`SignInThrottled` (a 429 with ``Retry-After``).

Built-ins:

* :class:`BasicAuth` / :func:`basic_auth_from_env`: HTTP Basic, operators and viewers
  whose passwords are kept as salted PBKDF2 hashes. Checks run in a thread, a few at a
  time, and a client that keeps failing is made to wait longer and longer.
* :class:`TrustedHeaderAuth`: the identity set by a reverse proxy in a header (e.g.
  ``X-Forwarded-User``), accepted only from the proxy's addresses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping

import anyio
import anyio.to_thread
from starlette.requests import Request

from commandbus_web.access import Role, User
from commandbus_web.passwords import check_password_length, hash_password, verifier
from commandbus_web.proxies import Addresses, peer_address
from commandbus_web.throttle import Backoff

__all__ = [
    "Auth",
    "BasicAuth",
    "SignInRefused",
    "SignInThrottled",
    "TrustedHeaderAuth",
    "basic_auth_from_env",
]

log = logging.getLogger("commandbus.web")

#: ``auth(request) -> User | str | None``, plain or async.
Auth = Callable[[Request], "User | str | Awaitable[User | str | None] | None"]


class SignInRefused(Exception):
    """A request an auth refuses outright (400), e.g. one naming its user twice."""


class SignInThrottled(Exception):
    """Too many failed sign-ins from this client, or too many checks at once (429)."""

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class BasicAuth:
    """HTTP Basic sign-in of one or more accounts, each an operator or a viewer.

    ``password_hash`` is what :func:`~commandbus_web.hash_password` returns. Passwords are
    checked in a worker thread, at most ``max_checks`` at once; more than
    ``max_waiting`` waiting checks are refused with a 429 rather than queued. After
    :data:`~commandbus_web.throttle.FREE_FAILURES` failures in a row a client waits
    (doubling, up to five minutes) before its next attempt is checked; every failure is
    logged at WARNING with the client's address. A verified Authorization header is
    remembered (by its SHA-256), so a browser session pays for PBKDF2 once.
    """

    realm = "commandbus console"

    def __init__(
        self,
        username: str | None = None,
        password_hash: str | None = None,
        *,
        role: Role = Role.OPERATOR,
        max_checks: int = 2,
        max_waiting: int = 16,
    ) -> None:
        self._accounts: dict[str, tuple[Callable[[str], bool], Role]] = {}
        self._verified: OrderedDict[bytes, User] = OrderedDict()
        self._checks: dict[bytes, anyio.Event] = {}
        self._backoff = Backoff()
        self._max_checks = max_checks
        self._max_waiting = max_waiting
        self._limiter: anyio.CapacityLimiter | None = None
        self._checking = 0
        if username is not None or password_hash is not None:
            if username is None or password_hash is None:
                raise ValueError("give both a user name and a password hash")
            self.add(username, password_hash, role=role)

    def add(self, username: str, password_hash: str, *, role: Role = Role.OPERATOR) -> BasicAuth:
        """Add an account; returns self, so calls chain."""
        if not username or ":" in username or not username.isprintable() or len(username) > 200:
            raise ValueError("a Basic auth user name must be 1..200 printable characters, no ':'")
        if username in self._accounts:
            raise ValueError(f"the user {username!r} is given twice")
        self._accounts[username] = (verifier(password_hash), Role(role))
        return self

    @property
    def accounts(self) -> Mapping[str, Role]:
        """User name -> role."""
        return {name: role for name, (_, role) in self._accounts.items()}

    @property
    def username(self) -> str:
        """The first account's name (what a one-account setup signs in as)."""
        return next(iter(self._accounts), "")

    async def __call__(self, request: Request) -> User | None:
        values = request.headers.getlist("authorization")
        if len(values) != 1:
            return None
        scheme, _, value = values[0].partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            return None
        value = value.strip()
        key = hashlib.sha256(value.encode("utf-8", "replace")).digest()
        known = self._verified.get(key)
        if known is not None:
            self._verified.move_to_end(key)
            return known
        same = self._checks.get(key)
        if same is not None:  # a browser's parallel requests: one check serves them all
            await same.wait()
            return self._verified.get(key)
        done = self._checks[key] = anyio.Event()
        try:
            return await self._sign_in(request, key, value)
        finally:
            del self._checks[key]
            done.set()

    async def _sign_in(self, request: Request, key: bytes, value: str) -> User | None:
        client = request.client.host if request.client else "unknown"
        wait = self._backoff.wait(client)
        if wait > 0:
            log.warning("sign-in from %s refused: too many failures, retry in %.0f s", client, wait)
            raise SignInThrottled(wait, "too many failed sign-ins from your address")
        if self._checking >= self._max_waiting:
            log.warning(
                "sign-in from %s refused: %d checks already waiting", client, self._checking
            )
            raise SignInThrottled(1, "too many sign-ins at once")
        self._checking += 1
        try:
            user = await anyio.to_thread.run_sync(self._check, value, limiter=self._threads())
        finally:
            self._checking -= 1
        if user is None:
            failures = self._backoff.failure(client)
            log.warning(
                "sign-in failed from %s (%d in a row)",
                client,
                failures,
                extra={"client": client, "failures": failures},
            )
            return None
        self._backoff.success(client)
        self._verified[key] = user
        while len(self._verified) > 1000:
            self._verified.popitem(last=False)
        return user

    def _threads(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # made on first use: it belongs to the running loop
            self._limiter = anyio.CapacityLimiter(self._max_checks)
        return self._limiter

    def _check(self, value: str) -> User | None:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        name, sep, password = decoded.partition(":")
        account = self._accounts.get(name)
        if not sep or account is None:
            # A wrong user name costs what a wrong password does: no hint that it exists.
            for check, _ in list(self._accounts.values())[:1]:
                check(password)
            return None
        check, role = account
        return User(name, role) if check(password) else None


def basic_auth_from_env(environ: Mapping[str, str] | None = None) -> BasicAuth | None:
    """HTTP Basic from the environment; None when no account is set.

    An operator: ``COMMANDBUS_WEB_USER`` with ``COMMANDBUS_WEB_PASSWORD_HASH`` (from
    ``commandbus web --hash-password``) or ``COMMANDBUS_WEB_PASSWORD`` (hashed with a salt
    at once, never kept). A viewer: ``COMMANDBUS_WEB_VIEWER`` with
    ``COMMANDBUS_WEB_VIEWER_PASSWORD_HASH`` or ``COMMANDBUS_WEB_VIEWER_PASSWORD``.
    Raises ``ValueError`` for an account without a password, or a password shorter than
    :data:`~commandbus_web.passwords.MIN_PASSWORD_LENGTH`.
    """
    env = os.environ if environ is None else environ
    auth: BasicAuth | None = None
    for prefix, role in (
        ("COMMANDBUS_WEB_USER", Role.OPERATOR),
        ("COMMANDBUS_WEB_VIEWER", Role.VIEWER),
    ):
        name = env.get(prefix, "").strip()
        if not name:
            continue
        stem = prefix.removesuffix("_USER")
        hashed = env.get(f"{stem}_PASSWORD_HASH", "").strip()
        if not hashed:
            plain = env.get(f"{stem}_PASSWORD", "")
            if not plain:
                raise ValueError(
                    f"{prefix} is set: set {stem}_PASSWORD_HASH (commandbus web "
                    f"--hash-password) or {stem}_PASSWORD too"
                )
            try:
                hashed = hash_password(check_password_length(plain))
            except ValueError as exc:
                raise ValueError(f"{stem}_PASSWORD: {exc}") from None
        auth = (auth or BasicAuth()).add(name, hashed, role=role)
    return auth


class TrustedHeaderAuth:
    """The user named by a reverse proxy in ``header`` (e.g. ``X-Forwarded-User``).

    The proxy must set the header itself and strip it from visitors' requests. The header
    is accepted only from ``trusted_proxies`` (addresses or networks of the proxy): from
    anyone else it is ignored and logged. ``trust_any_client=True`` accepts it from every
    client instead, for a console that only the proxy can reach (a sidecar, a private
    socket); that is logged at WARNING when the console starts. A request carrying the
    header more than once is refused (400). ``operators``: the users who may act; None
    makes every named user an operator, otherwise the others are viewers.
    """

    def __init__(
        self,
        header: str,
        *,
        trusted_proxies: Collection[str] | None = None,
        trust_any_client: bool = False,
        operators: Collection[str] | None = None,
    ) -> None:
        if not header or not header.isascii() or not header.replace("-", "").isalnum():
            raise ValueError(f"{header!r} is not a header name")
        self.header = header
        self.trusted_proxies = Addresses(trusted_proxies or ())
        self.trust_any_client = trust_any_client
        self.operators = None if operators is None else frozenset(operators)
        if not self.trusted_proxies and not trust_any_client:
            raise ValueError(
                f"trusting {header} needs the proxy's address (trusted_proxies, "
                "--trusted-proxy): otherwise any client could name itself; pass "
                "trust_any_client=True (--trust-any-client) only if nothing but the proxy "
                "can reach the console"
            )
        if trust_any_client:
            log.warning(
                "INSECURE: the console trusts %s from ANY client: whoever reaches it can sign "
                "in as anyone. Use this only when nothing but the proxy can reach it.",
                header,
            )

    def __call__(self, request: Request) -> User | None:
        values = request.headers.getlist(self.header)
        if not values:
            return None
        if not self.trust_any_client:
            peer = peer_address(request.scope)
            if peer not in self.trusted_proxies:
                log.warning(
                    "ignored %s sent by %s, which is not a trusted proxy", self.header, peer
                )
                return None
        if len(values) > 1:
            raise SignInRefused(f"the {self.header} header is sent {len(values)} times")
        value = values[0].strip()
        if not value or len(value) > 200 or not value.isprintable():
            return None
        if self.operators is None or value in self.operators:
            return User(value, Role.OPERATOR)
        return User(value, Role.VIEWER)
