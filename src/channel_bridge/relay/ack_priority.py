"""Acknowledgements before relaying, in a process that does both.

`channel-bridge serve` runs the inbox and the relay worker on one event loop. When the loop is
the bottleneck, every delivery the worker starts (claim, upstream call, outcome) is CPU an
acknowledgement waits for: with both at full speed, a load the process could acknowledge
within milliseconds is acknowledged in seconds, and an upstream that waits 5 s (AXP) or 10 s
(Nexus) for its 2XX starts redelivering, which is more load. The acknowledgement is what the
upstreams' contracts time; the relay is durable and can fall behind for a while.

So the worker's concurrency follows how late the event loop runs (additive increase,
multiplicative decrease, as a congestion window). `watch_loop_lag` sleeps a short tick again
and again and reports how much later than asked it woke: the time a ready callback (an
acknowledgement's next step) waits behind the others. Each `period_s` the mean lag of the
period is compared with `target_s`. Later: the worker's share of its slots is halved, down to
`floor` calls in flight (so the backlog keeps draining under any load). On time: the share
grows by one step, back to every slot. Below saturation the worker takes whatever the
acknowledgements leave; in an overload it keeps its floor.

Lag alone is not overload, though. On a machine that took twice the CPU per request the mean
lag crossed 2 ms at an ordinary 200 msg/s, a load the process carried with the relay at full
speed (p99 240 ms end to end): throttled to its floor, the relay fell further behind every
second (p50 6.4-6.9 s after 10 s, docs/performance.md). What the upstreams time is the
acknowledgement, and it is at risk only when acknowledgements wait long: so a late period
counts only while the inbox's acknowledgements of that period also took longer than
`ack_budget_s` on average (250 ms by default, against AXP's 5 s and Nexus's 10 s; 0 reads the
lag alone). Below that the relay keeps every slot, however busy the loop.

Why the loop's lag and not the acknowledgement time alone: the first version read the
inbox's ack wait, and that is mostly commit time (the group-commit window, PostgreSQL's
fsync), which no yielding shortens. Against a 10 ms target it throttled the relay to seconds
behind at an ordinary 200 msg/s (docs/performance.md). The lag only grows when the loop has
more ready work than it can run, which is the one case yielding helps; both must hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from channel_bridge.ops import metrics

# Additive increase: the share regained per calm period (all slots back within ~16 periods).
_INCREASE = 1 / 16
# How often the lag is sampled: ten samples a default period, 200 wake-ups a second.
LAG_TICK_S = 0.005


class AckPriority:
    def __init__(
        self,
        *,
        target_s: float,
        floor: int,
        ack_budget_s: float = 0.0,
        period_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target_s = target_s
        self._floor = max(1, floor)
        self._ack_budget_s = ack_budget_s
        self._ack_sum_s = 0.0
        self._acks = 0
        # A period in which no acknowledgement completed keeps the last period's mean.
        self._ack_mean_s = 0.0
        self.period_s = period_s
        self._clock = clock
        self._period_started = clock()
        self._last_sample_at = self._period_started
        self._lag_sum_s = 0.0
        self._samples = 0
        self.share = 1.0

    def lagged(self, lag_s: float) -> None:
        """The loop ran a callback `lag_s` later than it was due."""
        self._lag_sum_s += max(0.0, lag_s)
        self._samples += 1
        self._last_sample_at = self._clock()

    def acked(self, total_s: float, count: int) -> None:
        """`count` acknowledgements committed, having waited `total_s` in all."""
        self._ack_sum_s += total_s
        self._acks += count

    def relay_slots(self, concurrency: int) -> int:
        """How many of the worker's `concurrency` calls may be in flight now."""
        now = self._clock()
        if now - self._period_started >= self.period_s:
            self._adjust(now)
            self._period_started = now
        if self.share >= 1.0:
            return concurrency
        return max(min(self._floor, concurrency), int(concurrency * self.share))

    def _adjust(self, now: float) -> None:
        if self._samples:
            lag_s = self._lag_sum_s / self._samples
        else:
            # No sample in the whole period: the probe itself is that late.
            lag_s = now - self._last_sample_at
        if self._acks:
            self._ack_mean_s = self._ack_sum_s / self._acks
        acks_slow = self._ack_budget_s <= 0 or self._ack_mean_s > self._ack_budget_s
        if lag_s > self._target_s and acks_slow:
            self.share = max(self.share / 2, _INCREASE / 4)
        else:
            self.share = min(1.0, self.share + _INCREASE)
        self._lag_sum_s = 0.0
        self._samples = 0
        self._ack_sum_s = 0.0
        self._acks = 0
        metrics.event_loop_lag_seconds.set(lag_s)
        metrics.relay_ack_priority_share.set(self.share)


async def watch_loop_lag(priority: AckPriority, *, tick_s: float = LAG_TICK_S) -> None:
    """Report the event loop's lag to `priority` until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + tick_s
        await asyncio.sleep(tick_s)
        priority.lagged(loop.time() - due)
