"""Acknowledgements first: the in-process worker yields its slots while acks are slow."""

from __future__ import annotations

import asyncio

from channel_bridge.ops import metrics
from channel_bridge.relay.ack_priority import AckPriority
from channel_bridge.relay.destinations import DestinationRegistry
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.worker import RelayWorker
from tests.conftest import make_settings


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _priority(ticks: Ticks, *, floor: int = 2) -> AckPriority:
    return AckPriority(target_s=0.010, floor=floor, period_s=1.0, clock=ticks)


def _period(priority: AckPriority, ticks: Ticks, *acks_s: float) -> int:
    for waited in acks_s:
        priority.acknowledged(waited)
    ticks.now += 1.0
    return priority.relay_slots(64)


def test_slow_acks_halve_the_slots_down_to_the_floor() -> None:
    ticks = Ticks()
    priority = _priority(ticks)
    assert priority.relay_slots(64) == 64
    # The slowest ack of the period decides, not the average.
    assert [_period(priority, ticks, 0.001, 0.030) for _ in range(7)] == [32, 16, 8, 4, 2, 2, 2]
    assert metrics.relay_ack_priority_share._value.get() == priority.share


def test_fast_acks_give_the_slots_back_one_step_a_period() -> None:
    ticks = Ticks()
    priority = _priority(ticks)
    for _ in range(3):
        _period(priority, ticks, 0.050)
    assert priority.relay_slots(64) == 8
    assert [_period(priority, ticks, 0.002) for _ in range(3)] == [12, 16, 20]


def test_a_period_without_acks_gives_every_slot_back_at_once() -> None:
    ticks = Ticks()
    priority = _priority(ticks)
    for _ in range(6):
        _period(priority, ticks, 0.050)
    assert priority.relay_slots(64) == 2
    assert _period(priority, ticks) == 64


def test_the_floor_never_exceeds_the_concurrency() -> None:
    ticks = Ticks()
    priority = _priority(ticks, floor=4)
    for _ in range(8):
        _period(priority, ticks, 0.050)
    assert priority.relay_slots(3) == 3
    assert priority.relay_slots(64) == 4


async def test_the_inbox_reports_each_batch_s_oldest_wait(sessionmaker) -> None:
    seen: list[float] = []

    class Recorder(AckPriority):
        def acknowledged(self, waited_s: float) -> None:
            seen.append(waited_s)

    inbox = Inbox(sessionmaker, window_ms=20, ack_priority=Recorder(target_s=0.01, floor=1))
    await asyncio.gather(
        *(inbox.accept(source="t", external_id=f"e{n}", payload={}) for n in range(5))
    )
    # One batch of five: one report, at least the group-commit window long.
    assert len(seen) == 1
    assert seen[0] >= 0.019


async def test_a_worker_behind_slow_acks_keeps_only_its_floor_in_flight(
    sessionmaker, database_url
) -> None:
    """While acknowledgements are slow the worker runs 2 calls at a time, not its 8; when
    they stop it takes every slot again, and the backlog drains either way."""
    ticks = Ticks()
    priority = _priority(ticks)
    in_flight = 0
    most_in_flight = 0
    release = asyncio.Event()

    async def destination(_ctx):
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await release.wait()
        in_flight -= 1
        return {}

    worker = await _worker_behind_slow_acks(
        sessionmaker, database_url, destination, priority, ticks
    )
    await worker.start()
    try:
        for _ in range(100):
            if in_flight >= 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert (in_flight, most_in_flight) == (2, 2)

        # The acks stop: the next period without any gives the worker all its slots.
        ticks.now += 1.0
        worker.wake()
        for _ in range(100):
            if in_flight == 8:
                break
            await asyncio.sleep(0.02)
        assert in_flight == 8
        release.set()
        for _ in range(200):
            if await _pending(sessionmaker) == 0:
                break
            await asyncio.sleep(0.05)
        assert await _pending(sessionmaker) == 0
    finally:
        release.set()
        await worker.stop()


async def test_a_throttled_worker_claims_once_a_period(sessionmaker, database_url) -> None:
    """At its floor the worker does not claim each time a slot frees: one claim a period
    (here 1 s), so each claim and outcome transaction serves every slot."""
    ticks = Ticks()
    priority = _priority(ticks)
    delivered: list[int] = []

    async def destination(ctx):
        delivered.append(ctx.delivery_id)
        return {}

    worker = await _worker_behind_slow_acks(
        sessionmaker, database_url, destination, priority, ticks
    )
    claims = 0
    claim = worker._claim

    async def counted(limit):
        nonlocal claims
        claims += 1
        return await claim(limit)

    worker._claim = counted  # type: ignore[method-assign]
    await worker.start()
    try:
        for _ in range(100):
            if delivered:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        # Both slots' deliveries were done within milliseconds; the next claim waits its turn.
        assert (len(delivered), claims) == (2, 1)
    finally:
        await worker.stop()


async def _worker_behind_slow_acks(sessionmaker, database_url, destination, priority, ticks):
    """A worker of 8 slots with 12 due deliveries (one partition each) to `destination`, its
    priority throttled to the floor: acks far over the target, a share of 1/16, 2 slots of 8."""
    registry = DestinationRegistry()
    registry.register("test.sink", destination)
    settings = make_settings(database_url, worker_concurrency=8, worker_poll_interval_s=0.05)
    inbox = Inbox(sessionmaker)
    for n in range(12):
        await inbox.accept(
            source="t",
            external_id=f"e{n}",
            payload={},
            deliveries=[DeliveryRequest("test.sink", {"n": n}, f"p{n}")],
        )
    for _ in range(4):
        _period(priority, ticks, 0.5)
    return RelayWorker(sessionmaker, registry, settings, ack_priority=priority)


async def _pending(sessionmaker) -> int:
    from sqlalchemy import func, select

    from channel_bridge.db.models import Delivery

    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status != "delivered")
            )
            or 0
        )


async def test_off_by_default_and_shared_by_inbox_and_worker_when_set(database_url, engine) -> None:
    from tests.conftest import running_app

    async with running_app(make_settings(database_url, worker_enabled=True)) as (app, _client):
        assert app.state_now.worker is not None
        assert app.state_now.worker._ack_priority is None
        assert app.state_now.inbox._ack_priority is None
    settings = make_settings(database_url, worker_enabled=True, worker_ack_target_ms=10.0)
    async with running_app(settings) as (app, _client):
        priority = app.state_now.worker._ack_priority
        assert isinstance(priority, AckPriority)
        assert app.state_now.inbox._ack_priority is priority
