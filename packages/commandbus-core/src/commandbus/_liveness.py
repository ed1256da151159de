"""TCP settings under which a connection to a silent server fails instead of hanging.

A server that stops answering while its sockets stay open (a network partition, a frozen
proxy or NAT) leaves a statement waiting for ever: nothing on the wire says the other
end is gone. Keepalive probes after 10 s of silence, 5 s apart, 3 of them, find a peer
that vanished in about 25 s; ``tcp_user_timeout`` (30 s) fails a connection whose sent
data stays unacknowledged. The library adds them to the connections it opens itself
(the CLI's pools, a listener's direct connection) unless the DSN or the caller sets
them; applications that open their own pool pass :data:`LIVENESS` in its ``kwargs``.
"""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import conninfo_to_dict

__all__ = ["LIVENESS", "with_liveness"]

#: libpq parameters: keepalives after 10 s idle, every 5 s, 3 misses; 30 s for unacked data.
LIVENESS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def with_liveness(dsn: str, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """``kwargs`` plus every :data:`LIVENESS` setting neither they nor ``dsn`` set."""
    given = {**conninfo_to_dict(dsn), **(kwargs or {})}
    return {**{k: v for k, v in LIVENESS.items() if k not in given}, **(kwargs or {})}
