"""The operator console (``commandbus_web``) inside Django, under Django's sign-in.

``path("commandbus/", include("commandbus_django.urls"))``. Who may do what is Django's
to say: a signed-in **staff** user reads; a user with the permission
``commandbus.operate_console`` (superusers have it) acts, recorded in the audit trail
under their Django username. Others are sent to ``LOGIN_URL`` (anonymous) or refused
(403).

The seam with the console is its public ``auth`` callable: this view decides the user
from Django's session (a ``commandbus_web.User``: a viewer, or an operator with the
permission) and hands it to the console in the ASGI scope (``commandbus_django.user``);
the console's ``auth`` only reads it back, and its default ``authorize`` lets viewers
view and operators act. The console's own CSRF protection (a token bound to the user,
Origin and Referer checks) guards its forms, so the view is exempt from Django's, which
would not know the console's token.

The console runs on the process's commandbus runtime (one event loop thread): each
request is handed to it as an ASGI call, and its response returned as Django's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from http.cookies import SimpleCookie
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt

__all__ = ["OPERATE_PERMISSION", "console_view", "console_user"]

#: The permission to act (retry, resolve, cancel, ...), as ``user.has_perm`` takes it.
OPERATE_PERMISSION = "commandbus.operate_console"
#: Where this view puts the signed-in user in the console's ASGI scope.
SCOPE_KEY = "commandbus_django.user"

_lock = threading.Lock()
_apps: dict[tuple[str, str, str], Any] = {}


def console_user(user: Any) -> Any:
    """The console's user for a Django staff user: an operator (their username in the
    audit trail) with the permission, else a viewer."""
    from commandbus_web import Role, User

    role = Role.OPERATOR if user.has_perm(OPERATE_PERMISSION) else Role.VIEWER
    return User(str(user.get_username()), role)


@csrf_exempt  # type: ignore[untyped-decorator]
def console_view(request: HttpRequest, subpath: str = "") -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not (user.is_active and user.is_staff):
        return HttpResponseForbidden("the commandbus console is for staff users")
    app, runtime = _console(request)
    prefix = request.path[: len(request.path) - len(subpath)].rstrip("/")
    scope = _scope(request, prefix, subpath, console_user(user))
    status, headers, body = runtime.run(_call, app, scope, request.body)
    return _response(status, headers, body)


def _console(request: HttpRequest) -> tuple[Any, Any]:
    """The console app of the commandbus task backend's database and schema (the
    ``default`` one if it is commandbus's, else the first; one app per process), and the
    runtime it runs on."""
    from commandbus_django._handles import handles_for
    from commandbus_django.apps import our_backends
    from commandbus_web import create_app

    backends = our_backends()
    if not backends:
        raise ImproperlyConfigured("the commandbus console needs a commandbus_django backend")
    backend_settings = backends.get("default", next(iter(backends.values()))).settings
    handles = handles_for(backend_settings.database, backend_settings.schema)
    key = (backend_settings.database, backend_settings.schema, str(id(handles.pool)))
    with _lock:
        app = _apps.get(key)
        if app is None:
            app = _apps[key] = create_app(
                handles.pool,  # a null pool: no connection idles between requests
                schema=handles.schema,
                auth=_scope_user,
                secret=_secret(),
                title=getattr(settings, "COMMANDBUS_CONSOLE_TITLE", "commandbus"),
            )
    return app, handles.runtime


def _scope_user(request: Any) -> Any:
    """The console's ``auth``: the user :func:`console_view` decided."""
    return request.scope.get(SCOPE_KEY)


def _secret() -> bytes:
    """The console's CSRF key, derived from SECRET_KEY: stable across processes."""
    return hmac.new(settings.SECRET_KEY.encode(), b"commandbus-console", hashlib.sha256).digest()


def _scope(request: HttpRequest, prefix: str, subpath: str, user: Any) -> dict[str, Any]:
    path = f"{prefix}/{subpath}"
    host, _, port = request.get_host().partition(":")
    default_port = 443 if request.is_secure() else 80
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": path,
        "raw_path": path.encode(),
        "root_path": prefix,
        "query_string": request.META.get("QUERY_STRING", "").encode("latin-1"),
        "headers": _headers(request),
        "client": (request.META.get("REMOTE_ADDR") or "", 0),
        "server": (host, int(port) if port.isdigit() else default_port),
        SCOPE_KEY: user,
    }


def _headers(request: HttpRequest) -> list[tuple[bytes, bytes]]:
    """The request's headers, Host always among them (as Django resolved it)."""
    found = {name.lower(): str(value) for name, value in request.headers.items()}
    found.setdefault("host", request.get_host())
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in found.items()]


async def _call(
    app: Any, scope: dict[str, Any], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through the ASGI app; its status, headers and whole body."""
    received = False
    finished = asyncio.Event()
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:  # the client stays until the whole response is sent (a streamed
            await finished.wait()  # response stops early on a disconnect)
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    return status, headers, b"".join(chunks)


def _response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> HttpResponse:
    response = HttpResponse(body, status=status)
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name.lower() == "set-cookie":
            response.cookies.load(SimpleCookie(value))
        elif name.lower() != "content-length":
            response[name] = value
    return response
