"""``commandbus web``: serve the operator console (the ``commandbus[web]`` extra) with uvicorn.

Sign-in, when configured, protects every page. HTTP Basic: set ``COMMANDBUS_WEB_USER``
and ``COMMANDBUS_WEB_PASSWORD_HASH`` (from ``commandbus web --hash-password``) or
``COMMANDBUS_WEB_PASSWORD`` for an operator, ``COMMANDBUS_WEB_VIEWER`` and
``COMMANDBUS_WEB_VIEWER_PASSWORD_HASH`` (or ``_PASSWORD``) for a viewer. Behind a reverse
proxy that authenticates: ``--auth-header X-Forwarded-User --trusted-proxy ADDRESS``.
Without either, the console is read-only for whoever reaches it. The mode is printed at
start. ``COMMANDBUS_WEB_SECRET`` keeps CSRF tokens valid across restarts and replicas.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import logging
import sys
from typing import Any

from commandbus._errors import ConfigurationError
from commandbus._validation import check_schema
from commandbus.cli._args import Parser, port
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
    parser.add_argument("--port", type=port, default=8080, help="(default 8080)")
    parser.add_argument(
        "--auth-header",
        metavar="HEADER",
        help="sign in the user named in this header, set by an authenticating proxy "
        "(needs --trusted-proxy)",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="ADDRESS",
        help="a reverse proxy's address or network (repeatable): only its --auth-header and "
        "X-Forwarded-Proto/-For/-Host are believed",
    )
    parser.add_argument(
        "--trust-any-client",
        action="store_true",
        help="INSECURE: accept --auth-header from every client (only when nothing but the "
        "proxy can reach the console)",
    )
    parser.add_argument(
        "--operator",
        action="append",
        metavar="NAME",
        help="with --auth-header: only these users may act (repeatable); others only read",
    )
    parser.add_argument(
        "--anonymous-read",
        action="store_true",
        help="with sign-in configured, let visitors who are not signed in read every page",
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
        return _hash_password(web)
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise ConfigurationError(MISSING) from None
    dsn = resolve_dsn(args)
    for warning in web.environment_warnings():
        print(f"commandbus web: warning: {warning}", file=sys.stderr, flush=True)
    try:
        auth = web.auth_from_options(
            header=args.auth_header,
            trusted_proxies=args.trusted_proxy,
            trust_any_client=args.trust_any_client,
            operators=args.operator,
        )
        if args.anonymous_read and auth is None:
            raise ValueError("--anonymous-read goes with a sign-in (nothing to relax without)")
        app = web.create_app(
            dsn,
            schema=check_schema(args.schema),
            auth=auth,
            anonymous_read=args.anonymous_read,
            trusted_proxies=args.trusted_proxy,
        )
    except ValueError as exc:  # e.g. COMMANDBUS_WEB_USER without a password
        raise ConfigurationError(str(exc)) from None
    # The DSN (and its password) is never printed: only where the console listens.
    print(f"commandbus console on http://{args.host}:{args.port}/", flush=True)
    print(f"mode: {app.state.mode}", flush=True)
    if args.trust_any_client:
        print(
            f"commandbus web: warning: INSECURE: {args.auth_header} is accepted from ANY "
            "client: whoever reaches this port can sign in as anyone",
            file=sys.stderr,
            flush=True,
        )
    _log_to_stderr()
    # Forwarded headers are the console's to judge (only from --trusted-proxy): uvicorn's
    # own handling would believe them from 127.0.0.1 whatever the options say.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", proxy_headers=False)
    return 0


def _hash_password(web: Any) -> int:
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else ""
    if not password:
        password = getpass.getpass("password: ")
    try:
        print(web.hash_password(password))
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return 0


def _log_to_stderr() -> None:
    """The console's own records (failed sign-ins at WARNING, actions at INFO), with time."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("commandbus")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False
