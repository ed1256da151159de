"""commandbus_web: the operator console of commandbus, an ASGI app (Starlette).

    from commandbus_web import create_app
    app = create_app(pool_or_dsn, auth=basic_auth_from_env())

It reads through commandbus's public API only and serves everything (htmx included)
from this package: no CDN, so it works offline and behind firewalls.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
