"""Acknowledgements first: the in-process worker yields its slots while the loop runs late."""

from __future__ import annotations

import asyncio
import time

from channel_bridge.ops import metrics
from channel_bridge.relay.ack_priority import AckPriority, watch_loop_lag
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


def _period(priority: AckPriority, ticks: Ticks, *lags_s: float) -> int:
    for lag in lags_s:
        priority.lagged(lag)
    ticks.now += 1.0
    return priority.relay_slots(64)


def test_a_late_loop_halves_the_slots_down_to_the_floor() -> None:
    ticks = Ticks()
    priority = _priority(ticks)
    assert priority.relay_slots(64) == 64
    assert [_period(priority, ticks, 0.001, 0.030) for _ in range(7)] == [32, 16, 8, 4, 2, 2, 2]
    assert metrics.relay_ack_priority_share._value.get() == priority.share
    assert metrics.event_loop_lag_seconds._value.get() == 0.0155


def test_the_mean_lag_decides_not_one_long_callback() -> None:
    ticks = Ticks()
    priority = _priority(ticks)
    # Nine callbacks on time and one 50 ms late: 5.9 ms on average, under the 10 ms target.
    assert _period(priority, ticks, *[0.001] * 9, 0.050) == 64
    assert _period(priority, ticks, *[0.012] * 10) == 32


def test_an_on_time_loop_gives_the_slots_back_one_step_a_period() -> None:
    ticks = Ticks()
    priority = _priority(ticks)
    for _ in range(3):
        _period(priority, ticks, 0.050)
    assert priority.relay_slots(64) == 8
    assert [_period(priority, ticks, 0.002) for _ in range(3)] == [12, 16, 20]


def test_a_period_without_a_sample_is_as_late_as_the_probe() -> None:
    ticks = Ticks()
    priority = _priority(ticks)
    # The probe did not wake for a whole period: the loop is at least that late.
    assert _period(priority, ticks) == 32
    priority.lagged(0.001)
    assert _period(priority, ticks) == 32 + 4


def test_the_floor_never_exceeds_the_concurrency() -> None:
    ticks = Ticks()
    priority = _priority(ticks, floor=4)
    for _ in range(8):
        _period(priority, ticks, 0.050)
    assert priority.relay_slots(3) == 3
    assert priority.relay_slots(64) == 4


def test_a_late_loop_with_quick_acks_keeps_every_slot() -> None:
    """A busy or slow machine carrying its load: the loop is late, acknowledgements are not."""
    ticks = Ticks()
    priority = AckPriority(target_s=0.002, floor=2, ack_budget_s=0.25, period_s=1.0, clock=ticks)
    for _ in range(5):
        priority.acked(20 * 0.08, 20)  # 80 ms each: well inside the budget
        assert _period(priority, ticks, 0.030) == 64
    # Acknowledgements slow down past the budget (an overload): now the relay yields.
    priority.acked(10 * 0.4, 10)
    assert _period(priority, ticks, 0.030) == 32
    # No acknowledgement completed in this period: the last mean stands.
    assert _period(priority, ticks, 0.030) == 16
    priority.acked(10 * 0.05, 10)
    assert _period(priority, ticks, 0.030) == 20  # quick again: one step back


async def test_the_inbox_reports_each_batch_s_waits(sessionmaker) -> None:
    reports: list[tuple[float, int]] = []
    inbox = Inbox(sessionmaker, on_acked=lambda total, count: reports.append((total, count)))
    await asyncio.gather(
        *(inbox.accept(source="t", external_id=f"w{n}", payload={}) for n in range(5))
    )
    assert sum(count for _total, count in reports) == 5
    assert all(0 < total < 5 * 10 for total, _count in reports)


async def test_the_probe_reports_how_late_the_loop_woke_it() -> None:
    seen: list[float] = []

    class Recorder(AckPriority):
        def lagged(self, lag_s: float) -> None:
            seen.append(lag_s)

    probe = asyncio.create_task(watch_loop_lag(Recorder(target_s=0.01, floor=1), tick_s=0.002))
    try:
        await asyncio.sleep(0.02)
        time.sleep(0.05)  # noqa: ASYNC251 (the point: one callback holds the loop for 50 ms)
        await asyncio.sleep(0.02)
    finally:
        probe.cancel()
    assert len(seen) >= 3
    late = [lag for lag in seen if lag >= 0.04]
    assert len(late) == 1
    assert late[0] < 0.2
    assert sorted(seen)[len(seen) // 2] < 0.01  # the rest woke about on time


async def test_a_worker_on_a_late_loop_keeps_only_its_floor_in_flight(
    sessionmaker, database_url
) -> None:
    """While the loop runs late the worker runs 2 calls at a time, not its 8; when it is on
    time again the worker takes every slot back, and the backlog drains either way."""
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

    worker = await _worker_on_a_late_loop(sessionmaker, database_url, destination, priority, ticks)
    await worker.start()
    try:
        for _ in range(100):
            if in_flight >= 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert (in_flight, most_in_flight) == (2, 2)

        # The loop is on time again: period by period the worker takes its slots back.
        for _ in range(16):
            _period(priority, ticks, 0.0)
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

    worker = await _worker_on_a_late_loop(sessionmaker, database_url, destination, priority, ticks)
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


async def _worker_on_a_late_loop(sessionmaker, database_url, destination, priority, ticks):
    """A worker of 8 slots with 12 due deliveries (one partition each) to `destination`, its
    priority throttled to the floor: a lag far over the target, a share of 1/16, 2 slots of 8."""
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


async def test_on_by_default_shared_with_the_worker_and_off_at_zero(database_url, engine) -> None:
    from tests.conftest import running_app

    async with running_app(make_settings(database_url, worker_enabled=True)) as (app, _client):
        priority = app.state_now.worker._ack_priority
        assert isinstance(priority, AckPriority)
        assert priority._target_s == 0.002
        assert priority._ack_budget_s == 0.25
        assert app.state_now.inbox._on_acked == priority.acked
        # The probe is running: samples arrive while the app serves.
        before = priority._last_sample_at
        await asyncio.sleep(0.05)
        assert priority._last_sample_at > before
        assert "loop-lag" in {task.get_name() for task in asyncio.all_tasks()}
    assert "loop-lag" not in {task.get_name() for task in asyncio.all_tasks()}
    settings = make_settings(database_url, worker_enabled=True, worker_loop_lag_target_ms=0)
    async with running_app(settings) as (app, _client):
        assert app.state_now.worker._ack_priority is None
