"""Sign-in in front of every route: once an ``auth`` is configured, nothing (pages, static
files, unknown URLs) answers a visitor who is not signed in, unless ``anonymous_read``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from commandbus_web.access import Action
from commandbus_web.auth import BasicAuth, SignInRefused, SignInThrottled
from commandbus_web.console import USER_KEY, Console

__all__ = ["SignInGate", "sign_in_page"]


class SignInGate:
    def __init__(self, app: ASGIApp, *, console: Console) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        console = self.console
        request = Request(scope)
        response: Response
        try:
            user = await console.user(request)
        except SignInThrottled as exc:
            scope[USER_KEY] = None
            response = await console.render(
                request,
                "error.html",
                {"heading": "Too many sign-ins", "detail": f"{exc}; try again later"},
                status=429,
                headers={"Retry-After": str(exc.retry_after)},
            )
        except SignInRefused as exc:
            scope[USER_KEY] = None
            response = await console.render(
                request, "error.html", {"heading": "Bad request", "detail": str(exc)}, status=400
            )
        else:
            if await console.allowed(user, Action.VIEW):
                await self.app(scope, receive, send)
                return
            if user is None:
                response = await sign_in_page(console, request)
            else:
                response = await console.render(
                    request,
                    "error.html",
                    {"heading": "Forbidden", "detail": f"{user.name} may not use this console"},
                    status=403,
                )
        await response(scope, receive, send)


async def sign_in_page(console: Console, request: Request) -> Response:
    """HTTP Basic: 401 and a challenge, so the browser asks for credentials. Other sign-ins
    happen before the console (a proxy, the host application): 403 saying so."""
    if isinstance(console.auth, BasicAuth):
        return await console.render(
            request,
            "error.html",
            {"heading": "Sign in required", "detail": "wrong or missing credentials"},
            status=401,
            headers={"WWW-Authenticate": f'Basic realm="{BasicAuth.realm}", charset="UTF-8"'},
        )
    return await console.render(
        request,
        "error.html",
        {
            "heading": "Sign in required",
            "detail": "this console is behind a sign-in that did not name you",
        },
        status=403,
    )
