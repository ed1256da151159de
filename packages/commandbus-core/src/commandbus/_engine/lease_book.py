"""Crash isolation: which leases are in flight until when, and when to run one alone.

A lease that expired without an outcome may be a command that killed its worker. Its
next run happens alone, once nothing else of this worker is in flight, so that if it
kills the worker again no other command dies (and is blamed) with it. Handlers whose
own lease expired are not waited for: they are suspects, not bystanders. The leases
that expired while other commands ran are *forgiven* by the dequeue statement (they do
not use up the attempt budget); this book only decides when to rescue.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["LeaseBook"]


class LeaseBook:
    """In-flight leases of one worker, by lease id, with the loop time each ends."""

    def __init__(self) -> None:
        self._expiry: dict[int, float] = {}
        #: A lease of the domain expired without an outcome: rescue it next, alone.
        self.expired_waiting = False
        #: A rescued command is running: lease nothing else meanwhile.
        self.solo = False

    def reset(self) -> None:
        self._expiry.clear()
        self.expired_waiting = self.solo = False  # the first dequeue tells

    def hold(self, lease_ids: Iterable[int], until: float) -> None:
        for lease_id in lease_ids:
            self._expiry[lease_id] = until

    def release(self, lease_id: int) -> None:
        self._expiry.pop(lease_id, None)

    def extend(self, lease_id: int, until: float) -> None:
        if lease_id in self._expiry:
            self._expiry[lease_id] = until

    def __len__(self) -> int:
        return len(self._expiry)

    @property
    def isolating(self) -> bool:
        """Whether new work must wait: a rescue is due, or a rescued command runs."""
        return self.expired_waiting or self.solo

    def until_bystanders_done(self, now: float) -> float | None:
        """Seconds until the next in-flight lease expires, or None if every in-flight
        command's lease has expired already (or nothing is in flight)."""
        live = [t - now for t in self._expiry.values() if t > now]
        return min(live) if live else None
