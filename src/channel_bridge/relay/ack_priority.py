"""Acknowledgements before relaying, in a process that does both.

`channel-bridge serve` runs the inbox and the relay worker on one event loop. When the loop is
the bottleneck, every delivery the worker starts (claim, upstream call, outcome) is CPU an
acknowledgement waits for: with both at full speed, a load the process could acknowledge
within milliseconds is acknowledged in seconds, and an upstream that waits 5 s (AXP) or 10 s
(Nexus) for its 2XX starts redelivering, which is more load. The acknowledgement is what the
upstreams' contracts time; the relay is durable and can fall behind for a while.

So the worker's concurrency follows how fast the inbox acknowledges (additive increase,
multiplicative decrease, as a congestion window): each `period_s` the slowest
acknowledgement of the period is compared with `target_s`. Slower: the worker's share of its
slots is halved, down to `floor` calls in flight (so the backlog keeps draining under any
load). Faster: the share grows by one step, back to every slot. A period without any
acknowledgement gives the worker all its slots at once. Below saturation the worker takes
whatever the acknowledgements leave; at saturation it keeps its floor.

The acknowledgement time measured is the inbox's: from `accept` to the commit that releases
it (the group-commit window, the wait for a writer, the transaction). When the loop is
saturated that time stretches with everything else on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from channel_bridge.ops import metrics

# Additive increase: the share regained per calm period (all slots back within ~16 periods).
_INCREASE = 1 / 16


class AckPriority:
    def __init__(
        self,
        *,
        target_s: float,
        floor: int,
        period_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target_s = target_s
        self._floor = max(1, floor)
        self.period_s = period_s
        self._clock = clock
        self._period_started = clock()
        self._slowest_s = 0.0
        self._acknowledged = 0
        self.share = 1.0

    def acknowledged(self, waited_s: float) -> None:
        """One acknowledgement (or a batch's slowest one) took `waited_s`."""
        self._acknowledged += 1
        if waited_s > self._slowest_s:
            self._slowest_s = waited_s

    def relay_slots(self, concurrency: int) -> int:
        """How many of the worker's `concurrency` calls may be in flight now."""
        now = self._clock()
        if now - self._period_started >= self.period_s:
            self._adjust()
            self._period_started = now
        if self.share >= 1.0:
            return concurrency
        return max(min(self._floor, concurrency), int(concurrency * self.share))

    def _adjust(self) -> None:
        if self._acknowledged == 0:
            self.share = 1.0
        elif self._slowest_s > self._target_s:
            self.share = max(self.share / 2, _INCREASE / 4)
        else:
            self.share = min(1.0, self.share + _INCREASE)
        self._acknowledged = 0
        self._slowest_s = 0.0
        metrics.relay_ack_priority_share.set(self.share)
