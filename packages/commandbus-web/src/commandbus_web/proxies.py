"""Reverse proxies: which addresses are trusted, and what their forwarded headers say.

Only a request whose direct peer is a trusted proxy may tell the console the visitor's
scheme (``X-Forwarded-Proto``), address (``X-Forwarded-For``) and host
(``X-Forwarded-Host``); anyone else's forwarded headers are ignored. The peer's own
address is kept in the scope (:func:`peer_address`): trusted-header sign-in checks it,
not the forwarded one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Addresses", "ForwardedHeadersMiddleware", "peer_address"]

_PEER = "commandbus_web.peer"

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Addresses:
    """A set of IP addresses and networks (``10.0.0.5``, ``10.0.0.0/8``, ``::1``)."""

    def __init__(self, entries: Iterable[str]) -> None:
        networks: list[_Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/8)"
                ) from None
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def __str__(self) -> str:
        return ", ".join(str(n) for n in self.networks)


def peer_address(scope: Scope) -> str | None:
    """The address of whoever opened the connection (the proxy, behind one)."""
    if _PEER in scope:
        peer: str | None = scope[_PEER]
        return peer
    client = scope.get("client")
    return client[0] if client else None


class ForwardedHeadersMiddleware:
    """Take the scheme, client address and host from a trusted proxy's headers."""

    def __init__(self, app: ASGIApp, *, trusted: Addresses) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = peer_address(scope)
            scope[_PEER] = peer
            if self.trusted and peer in self.trusted:
                scope = _forwarded(scope, self.trusted)
        await self.app(scope, receive, send)


def _forwarded(scope: Scope, trusted: Addresses) -> Scope:
    headers = Headers(scope=scope)
    scope = dict(scope)
    proto = _last(headers, "x-forwarded-proto").lower()
    if proto in ("http", "https"):
        scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws"}.get(proto, "wss")
    hops = [hop.strip() for value in headers.getlist("x-forwarded-for") for hop in value.split(",")]
    # The nearest hops are trusted proxies; the first address before them is the client.
    for hop in reversed(hops):
        if hop and hop not in trusted:
            port = scope["client"][1] if scope.get("client") else 0
            scope["client"] = (hop, port)
            break
    host = _last(headers, "x-forwarded-host")
    if host:
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"] + [
            (b"host", host.encode("latin-1"))
        ]
    return scope


def _last(headers: Headers, name: str) -> str:
    """The value the nearest proxy appended (a header may carry a comma-separated list)."""
    values = [v.strip() for value in headers.getlist(name) for v in value.split(",")]
    return values[-1] if values else ""
