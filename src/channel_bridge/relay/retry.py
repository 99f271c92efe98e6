"""When to try a failed delivery again, or give up: one decision per failed attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from channel_bridge.relay.errors import (
    AuthError,
    DeliveryError,
    PermanentError,
    RetryableError,
    ThrottledError,
)
from channel_bridge.settings import Settings


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """`retry` after `delay_s`, or `dead` with `reason`."""

    outcome: Literal["retry", "dead"]
    delay_s: float = 0.0
    reason: str = ""


class RetryPolicy:
    """The retry schedule from settings, with jitter, throttling floor and Retry-After clamping."""

    def __init__(self, settings: Settings, *, rng: random.Random | None = None) -> None:
        self.schedule = [float(s) for s in settings.retry_schedule_s]
        self.jitter = settings.retry_jitter
        self.throttled_min_s = settings.retry_throttled_min_s
        self._rng = rng or random.Random()

    @property
    def max_attempts(self) -> int:
        """The first try plus one per scheduled delay."""
        return len(self.schedule) + 1

    def scheduled_delay(self, attempt_number: int, *, throttled: bool = False) -> float:
        """The jittered delay after failed attempt `attempt_number` (1-based)."""
        base = self.schedule[min(attempt_number, len(self.schedule)) - 1]
        delay = base * (1 + self._rng.uniform(-self.jitter, self.jitter)) if self.jitter else base
        if throttled:
            delay = max(delay, self.throttled_min_s)
        return delay

    def decide(self, error: BaseException, *, attempt_number: int) -> RetryDecision:
        """What to do after attempt `attempt_number` failed with `error`."""
        reason = describe(error)
        if isinstance(error, PermanentError):
            return RetryDecision("dead", reason=f"permanent error: {reason}")
        if isinstance(error, AuthError):
            # The worker already retried once immediately with refreshed credentials.
            return RetryDecision("dead", reason=f"authentication failed twice: {reason}")
        if isinstance(error, DeliveryError) and not isinstance(error, RetryableError):
            return RetryDecision("dead", reason=f"unclassified delivery error: {reason}")
        if attempt_number >= self.max_attempts:
            return RetryDecision(
                "dead", reason=f"gave up after {attempt_number} attempts: {reason}"
            )
        throttled = isinstance(error, ThrottledError)
        delay = self.scheduled_delay(attempt_number, throttled=throttled)
        retry_after = getattr(error, "retry_after_s", None)
        if retry_after is not None:
            # Honour the upstream's wish, but neither hammer it sooner nor stall far longer.
            delay = min(max(float(retry_after), delay), 2 * delay)
        return RetryDecision("retry", delay_s=delay, reason=reason)


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    status = getattr(error, "http_status", None)
    return f"HTTP {status}: {text}" if status else text
