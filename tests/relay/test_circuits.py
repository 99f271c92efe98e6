"""Circuit breakers: a failing upstream is left alone and probed, a throttle pauses it, and a
long outage dead-letters nothing; shared by every worker through the database."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from channel_bridge.db.models import Attempt, CircuitState, Delivery
from channel_bridge.relay.circuits import Circuit
from channel_bridge.relay.destinations import DeliveryContext, DestinationRegistry
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.errors import PermanentError, RetryableError, ThrottledError
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.worker import RelayWorker
from tests.conftest import make_settings
from tests.relay.conftest import RecordingDestination

UPSTREAM = Circuit(name="upstream", key="upstream:test")
OTHER = Circuit(name="other", key="other:test")


def _settings(database_url: str, **overrides: Any):  # type: ignore[no-untyped-def]
    return make_settings(
        database_url,
        retry_jitter=0.0,
        retry_schedule_s=[5.0, 30.0],  # 3 attempts: a long outage would kill without the breaker
        worker_concurrency=8,
        circuit_failure_threshold=3,
        circuit_probe_initial_s=1.0,
        circuit_probe_max_s=4.0,
        **overrides,
    )


def _registry(*pairs: tuple[str, Circuit | None, RecordingDestination]) -> DestinationRegistry:
    registry = DestinationRegistry()
    for name, circuit, destination in pairs:
        registry.register(name, destination, circuit=circuit)
    return registry


async def _queue(
    sessionmaker, clock, destination: str, count: int, partitions: int, batch: str = "a"
) -> list[int]:
    inbox = Inbox(sessionmaker, clock=clock)
    ids = []
    for n in range(count):
        acceptance = await inbox.accept(
            source="test",
            external_id=f"{destination}-{batch}-{n}",
            payload={},
            deliveries=[DeliveryRequest(destination, {"n": n}, f"{destination}:{n % partitions}")],
        )
        ids += acceptance.delivery_ids
    return ids


async def _deliveries(sessionmaker) -> list[Delivery]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Delivery).order_by(Delivery.id)))


async def _circuit(sessionmaker, key: str) -> CircuitState:
    async with sessionmaker() as session:
        row = await session.get(CircuitState, key)
        assert row is not None
        return row


async def _state(sessionmaker, key: str) -> str:
    """The circuit's state ("closed" before any worker created its row)."""
    async with sessionmaker() as session:
        row = await session.get(CircuitState, key)
        return row.state if row is not None else "closed"


def _down(ctx: DeliveryContext[Any]) -> BaseException:
    return RetryableError("upstream answered 503", http_status=503)


async def test_failures_open_the_circuit_and_only_its_deliveries_wait(
    database_url, sessionmaker, clock
) -> None:
    failing, healthy = RecordingDestination(script=_down), RecordingDestination()
    registry = _registry(("up.send", UPSTREAM, failing), ("other.send", OTHER, healthy))
    worker = RelayWorker(
        sessionmaker, registry, _settings(database_url), clock=clock, worker_id="w"
    )
    await _queue(sessionmaker, clock, "up.send", 12, partitions=12)

    # One call at a time until the upstream has answered this process: three failures in a
    # row open the circuit after exactly three calls, whatever was claimed.
    for _ in range(6):
        await worker.run_once()
    circuit = await _circuit(sessionmaker, UPSTREAM.key)
    assert circuit.state == "open" and circuit.consecutive_failures == 3
    assert len(failing.calls) == 3

    await _queue(sessionmaker, clock, "other.send", 3, partitions=3)
    clock.advance(0.5)  # before the first probe: nothing goes to the open upstream
    await worker.run_once()  # the other upstream's first call, alone
    await worker.run_once()  # it answered: the rest at once
    assert len(failing.calls) == 3
    assert len(healthy.calls) == 3, "another upstream's deliveries are never held up"


async def test_one_probe_at_a_growing_interval_without_spending_budgets(
    database_url, sessionmaker, clock
) -> None:
    failing = RecordingDestination(script=_down)
    registry = _registry(("up.send", UPSTREAM, failing))
    worker = RelayWorker(
        sessionmaker, registry, _settings(database_url), clock=clock, worker_id="w"
    )
    await _queue(sessionmaker, clock, "up.send", 6, partitions=6)
    while await _state(sessionmaker, UPSTREAM.key) != "open":
        await worker.run_once()
    before = len(failing.calls)

    probe_times = []
    for _ in range(40):  # 20 s of an outage, in half-second steps
        clock.advance(0.5)
        calls = len(failing.calls)
        await worker.run_once()
        assert len(failing.calls) - calls <= 1, "never more than the single probe"
        if len(failing.calls) > calls:
            probe_times.append(clock.now())
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(probe_times)]
    assert gaps[:3] == [2.0, 4.0, 4.0], "the interval doubles up to circuit_probe_max_s"
    assert len(failing.calls) - before == len(probe_times) <= 7

    # Probes spent no budget: with 3 attempts allowed, nothing is dead after 20 s of outage.
    deliveries = await _deliveries(sessionmaker)
    assert {d.status for d in deliveries} == {"pending"}
    async with sessionmaker() as session:
        outcomes = [a.outcome for a in await session.scalars(select(Attempt))]
    assert outcomes.count("probe") == len(probe_times)


async def test_a_successful_probe_closes_it_and_the_backlog_drains_at_once_in_order(
    database_url, sessionmaker, clock
) -> None:
    up = {"value": False}
    delivered: list[int] = []

    def answer(ctx: DeliveryContext[Any]) -> Any:
        if not up["value"]:
            return _down(ctx)
        delivered.append(ctx.payload["n"])
        return {"n": ctx.payload["n"]}

    destination = RecordingDestination(script=answer)
    registry = _registry(("up.send", UPSTREAM, destination))
    worker = RelayWorker(
        sessionmaker, registry, _settings(database_url), clock=clock, worker_id="w"
    )
    await _queue(sessionmaker, clock, "up.send", 20, partitions=4)
    while await _state(sessionmaker, UPSTREAM.key) != "open":
        await worker.run_once()
    clock.advance(3)
    await worker.run_once()  # a failed probe; the heads' own retries are now 5-30 s away
    up["value"] = True
    clock.advance(4)
    assert await worker.run_once() == 1  # the probe succeeds and closes the circuit
    assert (await _circuit(sessionmaker, UPSTREAM.key)).state == "closed"
    # Due at once, not after each head's private back-off: the clock does not move again.
    for _ in range(20):
        if await worker.run_once() == 0:
            break
    deliveries = await _deliveries(sessionmaker)
    assert {d.status for d in deliveries} == {"delivered"}
    assert sorted(delivered) == list(range(20))
    for partition in range(4):
        numbers = [n for n in delivered if n % 4 == partition]
        assert numbers == sorted(numbers), "conversation order holds"


async def test_retry_after_pauses_the_whole_upstream_and_costs_no_budget(
    database_url, sessionmaker, clock
) -> None:
    answers = iter([ThrottledError("slow down", http_status=429, retry_after_s=20)])

    def answer(ctx: DeliveryContext[Any]) -> Any:
        return next(answers, None)

    destination = RecordingDestination(script=answer)
    registry = _registry(("up.send", UPSTREAM, destination))
    worker = RelayWorker(
        sessionmaker, registry, _settings(database_url), clock=clock, worker_id="w"
    )
    first, *_ = await _queue(sessionmaker, clock, "up.send", 1, partitions=1)
    await worker.run_once()
    await _queue(sessionmaker, clock, "up.send", 5, partitions=5, batch="b")  # more of them
    for _ in range(19):
        clock.advance(1)
        assert await worker.run_once() == 0, "nothing goes to a paused upstream"
    assert len(destination.calls) == 1
    clock.advance(1)
    # Every head at once (one conversation has a second message behind the throttled one).
    assert await worker.run_once() == 5
    assert await worker.run_once() == 1
    deliveries = await _deliveries(sessionmaker)
    assert {d.status for d in deliveries} == {"delivered"}
    throttled = next(d for d in deliveries if d.id == first)
    assert throttled.attempt_count == 1, "the throttled attempt was not counted"


async def test_two_workers_share_the_state_and_only_one_takes_each_probe(
    database_url, sessionmaker, clock
) -> None:
    failing = RecordingDestination(script=_down)
    settings = _settings(database_url)
    registry = _registry(("up.send", UPSTREAM, failing))
    first = RelayWorker(sessionmaker, registry, settings, clock=clock, worker_id="w-1")
    second = RelayWorker(sessionmaker, registry, settings, clock=clock, worker_id="w-2")
    await _queue(sessionmaker, clock, "up.send", 10, partitions=10)
    while await _state(sessionmaker, UPSTREAM.key) != "open":
        await first.run_once()
    calls = len(failing.calls)
    assert await second.run_once() == 0, "the other worker sees the circuit open"
    clock.advance(1)
    claimed = await asyncio.gather(first.run_once(), second.run_once())
    assert sorted(claimed) == [0, 1] and len(failing.calls) == calls + 1


async def test_a_permanent_error_is_dead_at_once_and_resets_the_count(
    database_url, sessionmaker, clock
) -> None:
    answers = iter([_down(None), _down(None), PermanentError("bad request", http_status=400)])  # type: ignore[arg-type]

    def answer(ctx: DeliveryContext[Any]) -> Any:
        return next(answers, None)

    destination = RecordingDestination(script=answer)
    registry = _registry(("up.send", UPSTREAM, destination))
    worker = RelayWorker(
        sessionmaker, registry, _settings(database_url), clock=clock, worker_id="w"
    )
    await _queue(sessionmaker, clock, "up.send", 3, partitions=3)
    for _ in range(3):
        await worker.run_once()
    circuit = await _circuit(sessionmaker, UPSTREAM.key)
    assert (circuit.state, circuit.consecutive_failures) == ("closed", 0)
    assert "dead" in {d.status for d in await _deliveries(sessionmaker)}


async def test_max_in_flight_caps_the_calls_to_one_upstream(
    database_url, sessionmaker, clock
) -> None:
    in_flight, busiest = 0, 0
    release = asyncio.Event()

    async def slow(ctx: DeliveryContext[Any]) -> dict[str, Any]:
        nonlocal in_flight, busiest
        if ctx.partition_key == "warm-up":
            return {}
        in_flight += 1
        busiest = max(busiest, in_flight)
        await release.wait()
        in_flight -= 1
        return {}

    registry = DestinationRegistry()
    registry.register(
        "up.send", slow, circuit=Circuit(name="upstream", key="upstream:capped", max_in_flight=2)
    )
    worker = RelayWorker(
        sessionmaker, registry, _settings(database_url), clock=clock, worker_id="w"
    )
    # The first call of a process goes alone, until the upstream has answered once.
    await Inbox(sessionmaker, clock=clock).accept(
        source="test",
        external_id="warm-up",
        payload={},
        deliveries=[DeliveryRequest("up.send", {"n": -1}, "warm-up")],
    )
    assert await worker.run_once() == 1
    await _queue(sessionmaker, clock, "up.send", 6, partitions=6)
    await worker.start()
    try:
        await asyncio.sleep(0.5)
        assert busiest == 2
        release.set()
        for _ in range(100):
            if {d.status for d in await _deliveries(sessionmaker)} == {"delivered"}:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    assert busiest == 2
    assert {d.status for d in await _deliveries(sessionmaker)} == {"delivered"}


async def test_closing_the_circuit_makes_the_waiting_deliveries_due(
    database_url, sessionmaker, clock
) -> None:
    """A delivery scheduled far ahead by its own back-off is due the moment the upstream is
    back (what makes the backlog drain at once after an outage)."""
    up = {"value": False}
    destination = RecordingDestination(script=lambda ctx: {} if up["value"] else _down(ctx))
    registry = _registry(("up.send", UPSTREAM, destination))
    worker = RelayWorker(
        sessionmaker, registry, _settings(database_url), clock=clock, worker_id="w"
    )
    await _queue(sessionmaker, clock, "up.send", 3, partitions=3)
    while await _state(sessionmaker, UPSTREAM.key) != "open":
        await worker.run_once()
    waiting = [d for d in await _deliveries(sessionmaker) if d.next_attempt_at > clock.now()]
    assert waiting, "the failures scheduled retries ahead"
    up["value"] = True
    clock.advance(1)
    await worker.run_once()  # the probe
    assert all(
        d.next_attempt_at <= clock.now() + timedelta(seconds=0)
        for d in await _deliveries(sessionmaker)
        if d.status == "pending"
    )
