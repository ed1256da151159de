"""The ASGI application: :func:`create_app`, its routes and the error pages they share."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from commandbus import (
    CommandBusError,
    CommandNotFoundError,
    InvalidOperationError,
    ValidationError,
)
from commandbus._validation import check_schema
from commandbus_web import actions, pages
from commandbus_web.access import Authorize
from commandbus_web.auth import Auth, BasicAuth, TrustedHeaderAuth
from commandbus_web.console import Console, Forbidden, NotFound
from commandbus_web.gate import SignInGate, sign_in_page
from commandbus_web.load import Busy
from commandbus_web.proxies import Addresses, ForwardedHeadersMiddleware
from commandbus_web.security import CsrfError, SecurityHeadersMiddleware

__all__ = ["Console", "Forbidden", "NotFound", "create_app", "describe_mode"]

log = logging.getLogger("commandbus.web")

Handler = Callable[[Console, Request], Awaitable[Response]]

UNEXPECTED = "The console failed to show this page; the details are in its log."


def _page(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a page: expected failures become pages, never a traceback or a DSN."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(console, request)
        except CsrfError as exc:
            log.warning("refused a POST to %s: %s", request.url.path, exc)
            return await _error(console, request, 403, "Request refused", str(exc))
        except Forbidden as exc:
            return await _error(console, request, 403, "Not allowed", str(exc))
        except (NotFound, CommandNotFoundError) as exc:
            return await _error(console, request, 404, "Not found", str(exc))
        except (ValidationError, InvalidOperationError) as exc:
            return await _error(console, request, 400, "Bad request", str(exc))
        except Busy as exc:
            log.warning("%s turned away: %s", request.url.path, exc)
            return await _error(
                console,
                request,
                503,
                "The console is busy",
                "Too many heavy pages are being read at once: try again in a moment.",
                headers={"Retry-After": str(Busy.retry_after)},
            )
        except (psycopg.Error, CommandBusError, TimeoutError) as exc:
            detail = console.redact(_one_line(exc))
            log.error("%s failed: %s", request.url.path, detail)
            return await _error(console, request, 503, "Database unavailable", detail)
        except ClientDisconnect:
            return Response(status_code=400)
        except Exception:
            # A bug, not the visitor's doing: the traceback goes to the log, the visitor
            # gets a plain page that shows nothing of the internals.
            log.error("%s failed unexpectedly", request.url.path, exc_info=True)
            return await _error(console, request, 500, "Something went wrong", UNEXPECTED)

    return endpoint


async def _error(
    console: Console,
    request: Request,
    status: int,
    heading: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    return await console.render(
        request,
        "error.html",
        {"heading": heading, "detail": detail},
        status=status,
        headers=headers,
    )


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return " ".join(str(exc).split()) or type(exc).__name__


async def _login(console: Console, request: Request) -> Response:
    """With HTTP Basic: ask the browser for credentials, then go back to the console."""
    if await console.user(request) is not None:
        return RedirectResponse(request.url_for("overview").path, status_code=303)
    if not isinstance(console.auth, BasicAuth):
        raise Forbidden("this console has no login page: its sign-in is set up by the host app")
    return await sign_in_page(console, request)


def describe_mode(console: Console, trusted_proxies: Addresses | None = None) -> str:
    """One line saying who can read and who can act (printed by ``commandbus web``)."""
    auth = console.auth
    if auth is None:
        text = "read-only, no sign-in: anyone who reaches it can read every page"
    else:
        if isinstance(auth, BasicAuth):
            roles = {"operator": [], "viewer": []}  # type: dict[str, list[str]]
            for name, role in auth.accounts.items():
                roles[role.value].append(name)
            who = "; ".join(f"{k}s: {', '.join(v)}" for k, v in roles.items() if v)
            how = f"HTTP Basic ({who})"
        elif isinstance(auth, TrustedHeaderAuth):
            source = (
                "from ANY client (INSECURE)"
                if auth.trust_any_client
                else f"from {auth.trusted_proxies}"
            )
            roles_text = (
                "every named user is an operator"
                if auth.operators is None
                else f"operators: {', '.join(sorted(auth.operators))}; others are viewers"
            )
            how = f"trusted header {auth.header} {source} ({roles_text})"
        else:
            how = getattr(auth, "__name__", type(auth).__name__)
        readers = (
            "visitors who are not signed in may read"
            if console.anonymous_read
            else "every page needs it"
        )
        text = f"sign-in: {how}; {readers}"
    if trusted_proxies:
        text += f"; forwarded headers trusted from {trusted_proxies}"
    return text


def create_app(
    pool_or_dsn: AsyncConnectionPool | str,
    *,
    schema: str = "commandbus",
    auth: Auth | None = None,
    authorize: Authorize | None = None,
    anonymous_read: bool = False,
    trusted_proxies: Collection[str] | None = None,
    secret: bytes | str | None = None,
    title: str = "commandbus",
    refresh_seconds: float = 5.0,
    pool_max_size: int = 4,
) -> Starlette:
    """The operator console as an ASGI application (Starlette).

    ``pool_or_dsn``: an open :class:`AsyncConnectionPool` (yours: the console never closes
    it) or a connection string (the console opens its own small pool on first use and
    closes it on shutdown).

    ``auth(request)`` returns the signed-in :class:`~commandbus_web.User` (a plain string
    is an operator of that name) or None. With an ``auth``, every route asks for sign-in
    unless ``anonymous_read`` lets visitors who are not signed in read (never act).
    Without one, the console is read-only for everyone. ``authorize(user, action)``
    decides what a signed-in user may do (default: viewers view, operators act).
    ``trusted_proxies``: addresses or networks of reverse proxies whose
    ``X-Forwarded-Proto``/``-For``/``-Host`` headers are believed (nobody else's are).
    ``secret`` signs CSRF tokens (default: ``$COMMANDBUS_WEB_SECRET``, else random per
    process). Mount the result anywhere: ``app.mount("/console", create_app(pool))``.
    """
    if secret is None:
        secret = os.environ.get("COMMANDBUS_WEB_SECRET") or secrets.token_bytes(32)
    key = secret.encode() if isinstance(secret, str) else secret
    proxies = Addresses(trusted_proxies or ())
    console = Console(
        pool_or_dsn,
        schema=check_schema(schema),
        auth=auth,
        authorize=authorize,
        anonymous_read=anonymous_read,
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
        get("/domains/{domain}/{verb}", actions.pause_form, "domain_form"),
        post("/domains/{domain}/pause", actions.pause_domain, "domain_pause"),
        post("/domains/{domain}/resume", actions.resume_domain, "domain_resume"),
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
        middleware=[
            # Outermost first: every response gets the headers, sign-in sees the
            # forwarded scheme and address.
            Middleware(SecurityHeadersMiddleware),
            Middleware(ForwardedHeadersMiddleware, trusted=proxies),
            Middleware(SignInGate, console=console),
        ],
        lifespan=lifespan,
    )
    app.state.console = console
    app.state.mode = describe_mode(console, proxies)
    log.info("console: %s", app.state.mode)
    return app
