"""What every page shares: the pool, the core's services, who the user is and what they
may do, CSRF tokens, templates."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from commandbus import CommandBus, ProcessRepository, TroubleshootingQueue
from commandbus_web import formatting
from commandbus_web.access import Action, Authorize, Role, User, default_authorize
from commandbus_web.auth import Auth, BasicAuth
from commandbus_web.load import Load
from commandbus_web.security import CSRF_FIELD, Tokens, read_form, redact

__all__ = ["Console", "Forbidden", "NotFound", "url_builder"]

#: Where a request's user is kept once known (the scope's key).
USER_KEY = "commandbus_web.user"


def url_builder(request: Request) -> Callable[..., str]:
    """The templates' ``url(name, query=None, **path)``: a path of this console (under
    its mount), each path part percent-encoded (a name with ``/``, ``?`` or ``#`` stays
    one part), the query URL-encoded with empty values left out."""

    def url(name: str, /, query: Mapping[str, Any] | None = None, **path: Any) -> str:
        parts = {k: quote(str(v), safe="") for k, v in path.items()}
        target = request.url_for(name, **parts).path
        if query:
            pairs = [(k, v) for k, v in query.items() if v not in (None, "")]
            if pairs:
                target += "?" + urlencode(pairs, doseq=True)
        return target

    return url


class NotFound(Exception):
    """The thing a URL names does not exist: a 404 page."""


class Forbidden(Exception):
    """Not signed in, or not allowed: a 403 page that says which."""


class Console:
    """What the pages share: the pool, the core's services, auth, CSRF and templates."""

    def __init__(
        self,
        pool_or_dsn: AsyncConnectionPool | str,
        *,
        schema: str,
        auth: Auth | None,
        authorize: Authorize | None,
        anonymous_read: bool,
        secret: bytes,
        title: str,
        refresh_seconds: float,
        pool_max_size: int,
    ) -> None:
        self.schema = schema
        self.auth = auth
        self.authorize = authorize or default_authorize
        self.anonymous_read = anonymous_read
        self.title = title
        self.refresh_seconds = refresh_seconds
        self.tokens = Tokens(secret)
        self.load = Load()
        self._secrets: list[str] = []
        if isinstance(pool_or_dsn, str):
            info = conninfo_to_dict(pool_or_dsn)  # refuses a malformed DSN at once
            self._secrets = [str(info["password"])] if info.get("password") else []
            self._pool: AsyncConnectionPool | None = None
            self._dsn: str | None = pool_or_dsn
            self._pool_max_size = pool_max_size
        else:
            self._pool = pool_or_dsn
            self._dsn = None
        self._lock = asyncio.Lock()
        self.templates = Environment(
            loader=PackageLoader("commandbus_web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        formatting.install(self.templates)

    # -- database ------------------------------------------------------------------

    async def pool(self) -> AsyncConnectionPool:
        """The pool; one made from a DSN opens on first use (a mounted sub-application
        gets no lifespan events) and closes with :meth:`close`."""
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                assert self._dsn is not None
                given = conninfo_to_dict(self._dsn)
                defaults = {"connect_timeout": 5, "application_name": "commandbus-web"}
                pool = AsyncConnectionPool(
                    self._dsn,
                    open=False,
                    min_size=1,
                    max_size=self._pool_max_size,
                    # What the DSN says wins; these fill in what it leaves out.
                    kwargs={k: v for k, v in defaults.items() if k not in given},
                    timeout=10,
                    name="commandbus-web",
                )
                await pool.open(wait=False)
                self._pool = pool
        return self._pool

    @property
    def owns_pool(self) -> bool:
        return self._dsn is not None

    async def close(self) -> None:
        if self._dsn is not None and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def bus(self) -> CommandBus:
        return CommandBus(await self.pool(), schema=self.schema)

    async def tsq(self) -> TroubleshootingQueue:
        return TroubleshootingQueue(await self.pool(), schema=self.schema)

    async def processes(self) -> ProcessRepository:
        return ProcessRepository(await self.pool(), schema=self.schema)

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    # -- users ---------------------------------------------------------------------

    @property
    def sign_in_required(self) -> bool:
        """Whether a visitor who is not signed in is turned away from every route."""
        return self.auth is not None and not self.anonymous_read

    async def user(self, request: Request) -> User | None:
        """Who sent the request (asked of ``auth`` once per request), or None."""
        if USER_KEY in request.scope:
            cached: User | None = request.scope[USER_KEY]
            return cached
        found: Any = None
        if self.auth is not None:
            found = self.auth(request)
            if inspect.isawaitable(found):
                found = await found
        if isinstance(found, str):
            found = User(found.strip(), Role.OPERATOR) if found.strip() else None
        elif not isinstance(found, User) or not found.name.strip():
            found = None
        request.scope[USER_KEY] = found
        return found  # type: ignore[no-any-return]

    async def allowed(self, user: User | None, action: Action) -> bool:
        """May ``user`` do ``action``? Nobody acts without signing in."""
        if user is None:
            return action == Action.VIEW and not self.sign_in_required
        verdict = self.authorize(user, action)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return verdict is True

    async def signed_in(self, request: Request) -> User:
        """The signed-in user, or :class:`Forbidden` (every action needs one)."""
        user = await self.user(request)
        if user is None:
            raise Forbidden("sign in to act on commands")
        return user

    async def require(self, user: User, action: Action) -> None:
        if not await self.allowed(user, action):
            raise Forbidden(
                f"{user.name} ({user.role.value}) may not {action.value.replace('_', ' ')}"
            )

    async def checked_form(self, request: Request, user: User) -> dict[str, list[str]]:
        """The POSTed form, after the CSRF check for ``user`` (raises ``CsrfError``)."""
        form = await read_form(request)
        self.tokens.check(request, form, user.name)
        return form

    # -- pages ---------------------------------------------------------------------

    async def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        value, fresh = self.tokens.cookie_value(request)
        user = await self.user(request)
        can = {action.value: await self.allowed(user, action) for action in Action}
        can["act"] = any(v for k, v in can.items() if k != Action.VIEW.value)

        page = self.templates.get_template(template).render(
            request=request,
            url=url_builder(request),
            title=self.title,
            user=user,
            operator=None if user is None else user.name,
            can=can,
            can_login=user is None and isinstance(self.auth, BasicAuth),
            csrf_field=Markup('<input type="hidden" name="{}" value="{}">').format(
                CSRF_FIELD, self.tokens.sign(value, "" if user is None else user.name)
            ),
            refresh_seconds=self.refresh_seconds,
            **context,
        )
        response = HTMLResponse(page, status_code=status, headers=dict(headers or {}))
        if fresh:
            self.tokens.set_cookie(request, response, value)
        return response
