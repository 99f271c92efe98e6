"""The ordering value of new deliveries."""

from __future__ import annotations

import itertools
import time

_counter = itertools.count()


def next_sequence() -> int:
    """Monotonic ordering value for deliveries: wall-clock microseconds plus a tie-breaker."""
    return time.time_ns() // 1000 * 1000 + next(_counter) % 1000
