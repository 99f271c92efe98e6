"""Circuit breakers: an upstream that fails is left alone, and probed, by every worker at once.

Destinations that call the same upstream share a `Circuit` (the wiring declares it: AXP's
destinations one, Nexus's another). Its state is one row of `circuits`, read at every claim
and written in the outcome transaction, so all workers and replicas act on it together:

- **closed**: deliveries are claimed as usual. Each retryable failure counts; a success
  resets the count. `circuit_failure_threshold` failures in a row open it.
- **open**: none of the circuit's deliveries are claimed, so none spends its retry budget.
  One worker at a time takes the single probe (`next_probe_at`, then an interval doubling
  from `circuit_probe_initial_s` up to `circuit_probe_max_s`): one delivery, the oldest head,
  attempted even if its own retry is not due. A failed probe does not count against that
  delivery's budget. A successful probe closes the circuit, and every pending delivery of the
  circuit becomes due at once, so the backlog drains at full speed, in conversation order.
- **paused**: a 429 or a `Retry-After` pauses the whole circuit until that moment (at most
  `circuit_pause_max_s`); nothing is sent to the upstream before it, and the throttled
  delivery's attempt does not count against its budget.

Dead letters therefore come only from permanent errors, or from a budget spent while the
circuit was closed: a long outage never dead-letters what was accepted.

Each process also starts carefully: one call at a time to an upstream until it has answered
this process, and again after a retryable failure until a success, so the calls already
claimed when an outage begins do not all hit the upstream at once.

Limits: `Circuit.max_in_flight` caps the calls in flight to the upstream in one process, and
`rate_per_s` (a token bucket) their start rate; both per process, so the upstream sees them
times the number of worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from channel_bridge.ops import metrics

CLOSED, OPEN = "closed", "open"
# bridge_destination_state values.
STATE_VALUES = {"closed": 0, "open": 1, "paused": 2}


@dataclass(frozen=True, slots=True)
class Circuit:
    """An upstream that several destinations share: they fail, pause and recover together."""

    # Short and stable: the metrics label and the key into BRIDGE_CIRCUIT_LIMITS (e.g. "axp").
    name: str
    # Which upstream and account: the row in `circuits` (e.g. "axp:https://…:ABCDEF").
    key: str
    max_in_flight: int | None = None
    rate_per_s: float | None = None


@dataclass(slots=True)
class CircuitView:
    """A circuit's state as the worker last read it (refreshed at every claim)."""

    state: str = CLOSED
    consecutive_failures: int = 0
    next_probe_at: datetime | None = None
    probe_interval_s: float = 1.0
    paused_until: datetime | None = None

    def quiet(self, now: datetime) -> bool:
        """Closed, nothing counted, not paused: a success changes nothing here."""
        return self.status(now) == "closed" and self.consecutive_failures == 0

    def status(self, now: datetime) -> str:
        if self.state == OPEN:
            return "open"
        if self.paused_until is not None and self.paused_until > now:
            return "paused"
        return "closed"


@dataclass(slots=True)
class _TokenBucket:
    rate_per_s: float
    clock: Callable[[], float]
    tokens: float = 0.0
    stamp: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.tokens = max(1.0, self.rate_per_s)
        self.stamp = self.clock()

    def available(self) -> int:
        now = self.clock()
        burst = max(1.0, self.rate_per_s)
        self.tokens = min(burst, self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        return int(self.tokens)

    def take(self, count: int) -> None:
        self.tokens -= count


class CircuitBreakers:
    """The worker's side of its circuits: their last read state, and this process's calls."""

    def __init__(
        self,
        circuits: Iterable[Circuit],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.circuits = {circuit.key: circuit for circuit in circuits}
        self.views: dict[str, CircuitView] = {key: CircuitView() for key in self.circuits}
        self.in_flight: dict[str, int] = dict.fromkeys(self.circuits, 0)
        # One call at a time until this process has seen the upstream answer: at start-up
        # (so a backlog claimed while the first token is fetched does not all go out against
        # an upstream that is down) and after any retryable failure, until a success.
        self.suspect: dict[str, bool] = dict.fromkeys(self.circuits, True)
        # Pauses this process decided and has not seen committed yet: a claim in the moment
        # between the 429 and its commit must not send more.
        self._local_pauses: dict[str, datetime] = {}
        self._buckets = {
            key: _TokenBucket(circuit.rate_per_s, monotonic)
            for key, circuit in self.circuits.items()
            if circuit.rate_per_s
        }

    def refresh(self, views: dict[str, CircuitView], *, now: datetime) -> None:
        for key in self.circuits:
            view = views.get(key, CircuitView())
            local = self._local_pauses.get(key)
            if local is not None:
                if view.paused_until is not None and view.paused_until >= local:
                    del self._local_pauses[key]  # committed: the shared state has it
                else:
                    view.paused_until = local
            self.views[key] = view
            metrics.destination_state.labels(self.circuits[key].name).set(
                STATE_VALUES[view.status(now)]
            )

    def capacity(self, key: str, *, now: datetime, free: int) -> int:
        """How many of this circuit's deliveries may start now (0 while open or paused)."""
        view = self.views[key]
        if view.status(now) != "closed":
            return 0
        circuit = self.circuits[key]
        room = free
        if self.suspect[key]:
            room = min(room, 1 - self.in_flight[key])
        if circuit.max_in_flight:
            room = min(room, circuit.max_in_flight - self.in_flight[key])
        bucket = self._buckets.get(key)
        if bucket is not None:
            room = min(room, bucket.available())
        return max(0, room)

    def pause(self, key: str, until: datetime) -> None:
        """Stop this process's claims for the circuit now, before the pause is committed."""
        current = self._local_pauses.get(key)
        self._local_pauses[key] = until if current is None else max(current, until)
        view = self.views[key]
        view.paused_until = until if view.paused_until is None else max(view.paused_until, until)

    def probe_due(self, key: str, *, now: datetime) -> bool:
        view = self.views[key]
        return view.state == OPEN and (view.next_probe_at is None or view.next_probe_at <= now)

    def started(self, key: str, count: int = 1) -> None:
        self.in_flight[key] += count
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.take(count)

    def finished(self, key: str, *, answered: bool | None) -> None:
        """A call ended: the upstream answered (True), failed retryably (False), or no call
        reached it (None)."""
        self.in_flight[key] -= 1
        if answered is not None:
            self.suspect[key] = not answered
