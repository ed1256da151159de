"""The ASGI application: :func:`create_app` and the request plumbing every page shares."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import psycopg
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from commandbus import (
    CommandBus,
    CommandBusError,
    CommandNotFoundError,
    InvalidOperationError,
    ProcessRepository,
    TroubleshootingQueue,
    ValidationError,
)
from commandbus_web import formatting
from commandbus_web.auth import Auth, BasicAuth
from commandbus_web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CsrfError,
    SecurityHeadersMiddleware,
    Tokens,
    read_form,
    redact,
)

__all__ = ["Console", "Forbidden", "NotFound", "create_app"]

log = logging.getLogger("commandbus.web")

Handler = Callable[["Console", Request], Awaitable[Response]]


class NotFound(Exception):
    """The thing a URL names does not exist: a 404 page."""


class Forbidden(Exception):
    """An action by an anonymous visitor: a 403 page that says how to sign in."""


class Console:
    """What the pages share: the pool, the core's services, auth, CSRF and templates."""

    def __init__(
        self,
        pool_or_dsn: AsyncConnectionPool | str,
        *,
        schema: str,
        auth: Auth | None,
        secret: bytes,
        title: str,
        refresh_seconds: float,
        pool_max_size: int,
    ) -> None:
        self.schema = schema
        self.auth = auth
        self.title = title
        self.refresh_seconds = refresh_seconds
        self.tokens = Tokens(secret)
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

    # -- requests ------------------------------------------------------------------

    async def operator(self, request: Request) -> str | None:
        if "operator" in request.scope.get("state", {}):
            cached: str | None = request.state.operator
            return cached
        found: Any = None
        if self.auth is not None:
            found = self.auth(request)
            if inspect.isawaitable(found):
                found = await found
        if found is not None and (not isinstance(found, str) or not found.strip()):
            found = None
        request.state.operator = found
        return found  # type: ignore[no-any-return]

    async def require_operator(self, request: Request) -> str:
        operator = await self.operator(request)
        if operator is None:
            raise Forbidden("sign in to act on commands")
        return operator

    async def checked_form(self, request: Request) -> dict[str, list[str]]:
        """The POSTed form, after the CSRF check (raises :class:`CsrfError`)."""
        form = await read_form(request)
        self.tokens.check(request, form)
        return form

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
        operator = await self.operator(request)

        def url(name: str, /, query: Mapping[str, Any] | None = None, **path: Any) -> str:
            target = request.url_for(name, **{k: str(v) for k, v in path.items()}).path
            if query:
                pairs = [(k, v) for k, v in query.items() if v not in (None, "")]
                if pairs:
                    target += "?" + urlencode(pairs, doseq=True)
            return target

        page = self.templates.get_template(template).render(
            request=request,
            url=url,
            title=self.title,
            operator=operator,
            can_login=isinstance(self.auth, BasicAuth),
            csrf_field=Markup('<input type="hidden" name="{}" value="{}">').format(
                CSRF_FIELD, self.tokens.sign(value)
            ),
            refresh_seconds=self.refresh_seconds,
            **context,
        )
        response = HTMLResponse(page, status_code=status, headers=dict(headers or {}))
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                value,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                path=request.scope.get("root_path", "") or "/",
            )
        return response


def _page(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a page: expected failures become pages, never a traceback or a DSN."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(console, request)
        except CsrfError as exc:
            log.warning("refused a POST to %s: %s", request.url.path, exc)
            return await _error(console, request, 403, "Request refused", str(exc))
        except Forbidden as exc:
            return await _error(console, request, 403, "Sign in required", str(exc))
        except (NotFound, CommandNotFoundError) as exc:
            return await _error(console, request, 404, "Not found", str(exc))
        except (ValidationError, InvalidOperationError) as exc:
            return await _error(console, request, 400, "Bad request", str(exc))
        except (psycopg.Error, CommandBusError, TimeoutError) as exc:
            detail = console.redact(_one_line(exc))
            log.error("%s failed: %s", request.url.path, detail)
            return await _error(console, request, 503, "Database unavailable", detail)
        except ClientDisconnect:
            return Response(status_code=400)
        except Exception:
            # A bug, not the visitor's doing: the traceback goes to the log (redacted), the
            # visitor gets a plain page that shows nothing of the internals.
            log.error("%s failed unexpectedly", request.url.path, exc_info=True)
            return await _error(console, request, 500, "Something went wrong", UNEXPECTED)

    return endpoint


async def _error(
    console: Console, request: Request, status: int, heading: str, detail: str
) -> Response:
    return await console.render(
        request, "error.html", {"heading": heading, "detail": detail}, status=status
    )


UNEXPECTED = "The console failed to show this page; the details are in its log."


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return " ".join(str(exc).split()) or type(exc).__name__


async def _login(console: Console, request: Request) -> Response:
    """With HTTP Basic: ask the browser for credentials, then go back to the console."""
    if await console.operator(request) is not None:
        return RedirectResponse(request.url_for("overview").path, status_code=303)
    if not isinstance(console.auth, BasicAuth):
        raise Forbidden("this console has no login page: its auth is set up by the host app")
    return await console.render(
        request,
        "error.html",
        {"heading": "Sign in required", "detail": "wrong or missing credentials"},
        status=401,
        headers={"WWW-Authenticate": f'Basic realm="{BasicAuth.realm}", charset="UTF-8"'},
    )


def create_app(
    pool_or_dsn: AsyncConnectionPool | str,
    *,
    schema: str = "commandbus",
    auth: Auth | None = None,
    secret: bytes | str | None = None,
    title: str = "commandbus",
    refresh_seconds: float = 5.0,
    pool_max_size: int = 4,
) -> Starlette:
    """The operator console as an ASGI application (Starlette).

    ``pool_or_dsn``: an open :class:`AsyncConnectionPool` (yours: the console never closes
    it) or a connection string (the console opens its own small pool on first use and
    closes it on shutdown). ``auth(request)`` returns the operator's identity or None;
    without it (or when it returns None) the console is read-only. ``secret`` signs CSRF
    tokens (default: ``$COMMANDBUS_WEB_SECRET``, else random per process). Mount the
    result anywhere: ``app.mount("/console", create_app(pool))``.
    """
    from commandbus._validation import check_schema
    from commandbus_web import actions, pages

    if secret is None:
        secret = os.environ.get("COMMANDBUS_WEB_SECRET") or secrets.token_bytes(32)
    key = secret.encode() if isinstance(secret, str) else secret
    console = Console(
        pool_or_dsn,
        schema=check_schema(schema),
        auth=auth,
        secret=key,
        title=title,
        refresh_seconds=refresh_seconds,
        pool_max_size=pool_max_size,
    )

    def get(path: str, handler: Handler, name: str) -> Route:
        return Route(path, _page(console, handler), methods=["GET"], name=name)

    def post(path: str, handler: Handler, name: str) -> Route:
        return Route(path, _page(console, handler), methods=["POST"], name=name)

    routes = [
        get("/", pages.overview, "overview"),
        get("/overview/live", pages.overview_live, "overview_live"),
        get("/tsq", pages.troubleshooting, "tsq"),
        post("/tsq/confirm", actions.confirm, "tsq_confirm"),
        post("/tsq/apply", actions.apply, "tsq_apply"),
        get("/commands", pages.commands, "commands"),
        get("/commands/{domain}/{command_id}", pages.command, "command"),
        post("/commands/{domain}/{command_id}/cancel", actions.cancel_command, "command_cancel"),
        get("/batches", pages.batches, "batches"),
        get("/batches/{domain}/{batch_id}", pages.batch, "batch"),
        get("/processes", pages.processes, "processes"),
        get("/processes/{process_id}", pages.process, "process"),
        get("/workers", pages.workers, "workers"),
        get("/replies", pages.parked_replies, "replies"),
        post("/replies/{parked_id:int}/{verb}", actions.parked_reply, "reply_action"),
        get("/login", _login, "login"),
        Mount(
            "/static",
            app=StaticFiles(packages=[("commandbus_web", "static")]),
            name="static",
        ),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await console.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeadersMiddleware)],
        lifespan=lifespan,
    )
    app.state.console = console
    return app
