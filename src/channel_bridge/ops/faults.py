"""Repeated faults logged once per state change, then a summary with a count.

A loop that retries every second (the worker's claim, housekeeping) would otherwise log the
same traceback 3,600 times an hour during a database outage. `FaultLog` logs one warning
when the operation starts failing (class and first line of the error, no traceback), one
`still failing` line with the count every `summary_every_s` while it continues, and one
`works again` line with the count and duration when it recovers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from channel_bridge.ops.logging import get_logger

# A minute: an outage shows as a heartbeat of one line a minute per pod, not a flood.
SUMMARY_EVERY_S = 60.0


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The error's class and the first line of its message, shortened."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:limit]}" if text else type(exc).__name__


class FaultLog:
    """Logs `<what> failing` once, `<what> still failing` with a count now and then, and
    `<what> works again` on recovery."""

    def __init__(
        self,
        what: str,
        *,
        summary_every_s: float = SUMMARY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        logger: Any = None,
        **context: Any,
    ) -> None:
        self.what = what
        self.failures = 0
        self._summary_every_s = summary_every_s
        self._clock = clock
        self._log = logger or get_logger("channel_bridge.faults")
        self._context = context
        self._since = 0.0
        self._last_summary = 0.0
        self._since_summary = 0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, exc: BaseException) -> None:
        now = self._clock()
        self.failures += 1
        self._since_summary += 1
        if self.failures == 1:
            self._since = self._last_summary = now
            self._since_summary = 0
            self._log.warning(f"{self.what} failing", error=one_line(exc), **self._context)
        elif now - self._last_summary >= self._summary_every_s:
            self._log.warning(
                f"{self.what} still failing",
                failures=self.failures,
                failures_since_last=self._since_summary,
                for_s=round(now - self._since, 1),
                error=one_line(exc),
                **self._context,
            )
            self._last_summary = now
            self._since_summary = 0

    def succeeded(self) -> None:
        if not self.failures:
            return
        self._log.info(
            f"{self.what} works again",
            failures=self.failures,
            after_s=round(self._clock() - self._since, 1),
            **self._context,
        )
        self.failures = 0
