"""Head-of-line order within a partition; partitions never wait for each other."""

from __future__ import annotations

import random

from sqlalchemy import select

from channel_bridge.db.models import Delivery
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.errors import PermanentError, RetryableError
from tests.relay.conftest import drain, load_delivery
from tests.relay.conftest import queue_in_partition as _queue


async def test_fifty_in_one_partition_arrive_in_order_despite_transient_failures(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    rng = random.Random(20261124)
    failures = 0
    arrived: list[int] = []

    def flaky(ctx):
        nonlocal failures
        if rng.random() < 0.3:
            failures += 1
            return RetryableError("flaky upstream", http_status=503)
        arrived.append(ctx.payload["n"])
        return None

    sink.script = flaky
    ids = await _queue(inbox, "conv-1", 50)
    await drain(worker, clock)

    assert failures > 5
    assert arrived == list(range(50))
    # Every call, failed or not, was for the head of the line: the sequence never goes back.
    called = [ctx.payload["n"] for ctx in sink.calls]
    assert called == sorted(called)
    for delivery_id in ids:
        assert (await load_delivery(sessionmaker, delivery_id)).status == "delivered"


async def test_one_round_claims_only_the_head_of_each_partition(inbox, worker, sink) -> None:
    await _queue(inbox, "conv-a", 3)
    await _queue(inbox, "conv-b", 3)
    await inbox.accept(
        source="test",
        external_id="free",
        payload={},
        deliveries=[DeliveryRequest("test.sink", {"n": "free"})],
    )
    assert await worker.run_once() == 3
    assert sorted((c.partition_key or "", str(c.payload["n"])) for c in sink.calls) == [
        ("", "free"),
        ("conv-a", "0"),
        ("conv-b", "0"),
    ]


async def test_a_stuck_partition_does_not_delay_another(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    sink.script = lambda ctx: (
        RetryableError("down", http_status=503) if ctx.partition_key == "stuck" else None
    )
    stuck = await _queue(inbox, "stuck", 3)
    moving = await _queue(inbox, "moving", 5)
    for _ in range(5):
        await worker.run_once()  # no clock movement: "stuck" is waiting for its retry
    assert [c.payload["n"] for c in sink.calls if c.partition_key == "moving"] == [0, 1, 2, 3, 4]
    assert [c.payload["n"] for c in sink.calls if c.partition_key == "stuck"] == [0]
    for delivery_id in moving:
        assert (await load_delivery(sessionmaker, delivery_id)).status == "delivered"
    for delivery_id in stuck:
        assert (await load_delivery(sessionmaker, delivery_id)).status == "pending"


async def test_dead_delivery_is_skipped_and_the_partition_moves_on(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    sink.script = lambda ctx: (
        PermanentError("rejected", http_status=400) if ctx.payload["n"] == 0 else None
    )
    first, _second, third = await _queue(inbox, "conv-1", 3)
    await drain(worker, clock)
    assert [c.payload["n"] for c in sink.calls] == [0, 1, 2]
    dead = await load_delivery(sessionmaker, first)
    assert (dead.status, dead.skipped) == ("dead", True)
    assert (await load_delivery(sessionmaker, third)).status == "delivered"
    async with sessionmaker() as session:
        skipped = (
            await session.execute(select(Delivery.id).where(Delivery.skipped.is_(True)))
        ).scalars()
        assert list(skipped) == [first]
