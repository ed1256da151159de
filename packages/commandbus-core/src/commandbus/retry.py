"""Retry policy: how long to wait before each retry of a failing command."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from numbers import Real

from commandbus._errors import ValidationError
from commandbus._validation import check_delay, check_max_attempts, short_repr

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
        if self.max_attempts is None:
            raise ValidationError("max_attempts", "must be an integer, got None")
        check_max_attempts(self.max_attempts, 1)
        backoff = self.backoff
        if isinstance(backoff, str | bytes) or not isinstance(backoff, Iterable):
            raise ValidationError("backoff", f"must be a sequence of seconds, got {backoff!r}")
        if not (delays := tuple(backoff)):
            raise ValidationError("backoff", "must not be empty")
        object.__setattr__(self, "backoff", tuple(_seconds(delay) for delay in delays))
        jitter = self.jitter
        if not _is_real(jitter) or not 0 <= jitter <= 1:
            raise ValidationError(
                "jitter", f"must be a number between 0 and 1, got {short_repr(jitter)}"
            )
        object.__setattr__(self, "jitter", float(jitter))

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = self.backoff[min(max(attempt, 1), len(self.backoff)) - 1]
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return base

    def should_retry(self, attempt: int, max_attempts: int | None = None) -> bool:
        return attempt < (self.max_attempts if max_attempts is None else max_attempts)


def _is_real(value: object) -> bool:
    """Any real number (Decimal, Fraction, numpy scalars too), but not a bool."""
    return isinstance(value, Real | Decimal) and not isinstance(value, bool)


def _seconds(delay: object) -> float:
    """One backoff step, in seconds, as storable as a send's ``delay``."""
    if not isinstance(delay, timedelta) and not _is_real(delay):
        raise ValidationError(
            "backoff", f"must hold seconds or timedeltas, got {type(delay).__name__}"
        )
    try:
        if isinstance(delay, int):
            return check_delay(delay)  # check_delay tells an int beyond any float
        return check_delay(delay if isinstance(delay, timedelta) else float(delay))  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ValidationError("backoff", exc.message) from None
