"""``commandbus web``: serve the operator console (the ``commandbus[web]`` extra) with uvicorn.

Read-only unless an operator signs in. HTTP Basic: set ``COMMANDBUS_WEB_USER`` and
``COMMANDBUS_WEB_PASSWORD_HASH`` (from ``commandbus web --hash-password``) or
``COMMANDBUS_WEB_PASSWORD``. Behind a reverse proxy that authenticates: ``--auth-header
X-Forwarded-User`` (with ``--trusted-proxy ADDRESS`` to accept it only from the proxy).
``COMMANDBUS_WEB_SECRET`` keeps CSRF tokens valid across restarts and replicas.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import sys
from typing import Any

from commandbus._errors import ConfigurationError
from commandbus._validation import check_schema
from commandbus.cli._args import Parser, positive_int
from commandbus.cli._connect import resolve_dsn

MISSING = 'the web console is not installed: pip install "commandbus[web]"'


def add_parser(commands: Any, common: Parser) -> None:
    parser = commands.add_parser(
        "web",
        parents=[common],
        help="serve the operator console (web pages) with uvicorn",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=positive_int, default=8080, help="(default 8080)")
    parser.add_argument(
        "--auth-header",
        metavar="HEADER",
        help="trust the operator named in this header, set by an authenticating proxy",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="ADDRESS",
        help="accept --auth-header only from this client address (repeatable)",
    )
    parser.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password and print its hash for COMMANDBUS_WEB_PASSWORD_HASH, then exit",
    )
    parser.set_defaults(run=_web)


def _load() -> Any:
    try:
        return importlib.import_module("commandbus_web")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] in (
            "commandbus_web",
            "starlette",
            "jinja2",
            "uvicorn",
        ):
            raise ConfigurationError(MISSING) from None
        raise


def _web(args: argparse.Namespace) -> int:
    web = _load()
    if args.hash_password:
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else ""
        if not password:
            password = getpass.getpass("password: ")
        if not password:
            raise ConfigurationError("an empty password cannot be hashed")
        print(web.hash_password(password))
        return 0
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise ConfigurationError(MISSING) from None
    dsn = resolve_dsn(args)
    try:
        auth = web.auth_from_options(header=args.auth_header, trusted_proxies=args.trusted_proxy)
    except ValueError as exc:  # e.g. COMMANDBUS_WEB_USER without a password
        raise ConfigurationError(str(exc)) from None
    app = web.create_app(dsn, schema=check_schema(args.schema), auth=auth)
    mode = "read-only" if auth is None else f"sign-in: {web.describe_auth(auth)}"
    # The DSN (and its password) is never printed: only where the console listens.
    print(f"commandbus console on http://{args.host}:{args.port}/ ({mode})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", proxy_headers=False)
    return 0
