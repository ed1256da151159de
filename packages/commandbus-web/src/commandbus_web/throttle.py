"""Per-client back-off after failed sign-ins: guessing passwords gets slower and slower.

The first :data:`FREE_FAILURES` failures in a row cost nothing; after the n-th, the client
waits ``2 ** (n - FREE_FAILURES)`` seconds (at most :data:`MAX_WAIT`) before its next
attempt is even checked. A success forgets the client. Memory is bounded: the least
recently failing clients are forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FREE_FAILURES", "MAX_WAIT", "Backoff"]

FREE_FAILURES = 5
MAX_WAIT = 300.0
#: Clients remembered at most.
MAX_CLIENTS = 10_000
#: A client that has not failed for this long starts afresh.
FORGET_AFTER = 3600.0


@dataclass(slots=True)
class _Record:
    failures: int
    last: float


class Backoff:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._clients: OrderedDict[str, _Record] = OrderedDict()

    def wait(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next attempt (0: go ahead)."""
        record = self._clients.get(client)
        if record is None:
            return 0.0
        now = self._clock()
        if now - record.last > FORGET_AFTER:
            del self._clients[client]
            return 0.0
        return max(0.0, record.last + _delay(record.failures) - now)

    def failure(self, client: str) -> int:
        """Count a failed attempt; returns the failures in a row."""
        now = self._clock()
        record = self._clients.pop(client, None)
        if record is None or now - record.last > FORGET_AFTER:
            record = _Record(0, now)
        record.failures += 1
        record.last = now
        self._clients[client] = record
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        return record.failures

    def success(self, client: str) -> None:
        self._clients.pop(client, None)


def _delay(failures: int) -> float:
    if failures < FREE_FAILURES:
        return 0.0
    return min(MAX_WAIT, 2.0 ** min(failures - FREE_FAILURES, 30))
