"""Retry policy: how long to wait before each retry of a failing command."""

from __future__ import annotations

import random
from dataclasses import dataclass

from commandbus._errors import ValidationError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``backoff[i]`` seconds before retry ``i + 1``; the last value repeats.

    ``max_attempts`` is the default for work that carries no attempt budget of its own
    (replies handled by ``ProcessReplyRouter``); a command's own ``max_attempts``,
    fixed when it is sent, always wins. ``jitter`` spreads retries by up to that
    fraction of the delay, so a burst of failures does not retry in lock-step.
    """

    max_attempts: int = 3
    backoff: tuple[float, ...] = (10, 60, 300)
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValidationError("max_attempts", "must be an integer >= 1")
        if not self.backoff or any(b < 0 for b in self.backoff):
            raise ValidationError("backoff", "must be a non-empty sequence of seconds >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValidationError("jitter", "must be between 0 and 1")
        object.__setattr__(self, "backoff", tuple(float(b) for b in self.backoff))

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = self.backoff[min(max(attempt, 1), len(self.backoff)) - 1]
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return base

    def should_retry(self, attempt: int, max_attempts: int | None = None) -> bool:
        return attempt < (self.max_attempts if max_attempts is None else max_attempts)
