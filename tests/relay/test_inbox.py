"""Group-commit inbox: one row per key, the first answer for every duplicate, isolated failures."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from channel_bridge.db.models import Delivery, InboxEvent
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.inbox import Inbox


async def _count(sessionmaker, model) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_fifty_concurrent_same_key_accepts_store_once(sessionmaker) -> None:
    inbox = Inbox(sessionmaker, window_ms=2, max_batch=16)
    results = await asyncio.gather(
        *[
            inbox.accept(
                source="nexus.webhook",
                external_id="msg-1",
                payload={"i": i},
                ack={"id": f"ack-{i}"},
                deliveries=[
                    DeliveryRequest("test.sink", {"i": i}, "c1"),
                    DeliveryRequest("test.other", {"i": i}),
                ],
            )
            for i in range(50)
        ]
    )
    new = [r for r in results if r.is_new]
    assert len(new) == 1
    first_ack = new[0].ack
    assert all(r.ack == first_ack for r in results)
    assert {r.inbox_event_id for r in results} == {new[0].inbox_event_id}
    assert len(new[0].delivery_ids) == 2
    assert await _count(sessionmaker, InboxEvent) == 1
    assert await _count(sessionmaker, Delivery) == 2
    async with sessionmaker() as session:
        stored = (await session.execute(select(InboxEvent))).scalar_one()
        assert stored.ack == first_ack
        assert stored.payload == {"i": int(first_ack["id"].split("-")[1])}


async def test_duplicates_in_one_batch_get_the_first_ack(sessionmaker) -> None:
    # One batch by construction: the window is long and the cap is exactly the three calls.
    inbox = Inbox(sessionmaker, window_ms=10_000, max_batch=3)
    results = await asyncio.gather(
        inbox.accept(
            source="s",
            external_id="k",
            payload={},
            ack={"n": 1},
            deliveries=[DeliveryRequest("d", {})],
        ),
        inbox.accept(
            source="s",
            external_id="k",
            payload={},
            ack={"n": 2},
            deliveries=[DeliveryRequest("d", {})],
        ),
        inbox.accept(source="s", external_id="other", payload={}, ack={"n": 3}),
    )
    assert [(r.is_new, r.ack) for r in results] == [
        (True, {"n": 1}),
        (False, {"n": 1}),
        (True, {"n": 3}),
    ]
    assert results[1].inbox_event_id == results[0].inbox_event_id
    assert await _count(sessionmaker, Delivery) == 1


async def test_duplicate_of_an_earlier_batch_gets_the_stored_ack(sessionmaker) -> None:
    inbox = Inbox(sessionmaker)
    first = await inbox.accept(source="s", external_id="k", payload={}, ack={"n": 1})
    again = await asyncio.gather(
        *[inbox.accept(source="s", external_id="k", payload={}, ack={"n": 9}) for _ in range(5)]
    )
    assert all(
        (not r.is_new, r.ack, r.inbox_event_id) == (True, {"n": 1}, first.inbox_event_id)
        for r in again
    )


async def test_a_bad_item_fails_only_its_caller(sessionmaker) -> None:
    inbox = Inbox(sessionmaker, window_ms=10_000, max_batch=3)
    results = await asyncio.gather(
        inbox.accept(
            source="s", external_id="good-1", payload={}, deliveries=[DeliveryRequest("d", {})]
        ),
        # Not JSON: the multi-row insert fails, then only this item fails on its own.
        inbox.accept(source="s", external_id="bad", payload={"x": object()}),
        inbox.accept(source="s", external_id="good-2", payload={}),
        return_exceptions=True,
    )
    assert results[0].is_new and results[2].is_new
    assert isinstance(results[1], Exception)
    assert await _count(sessionmaker, InboxEvent) == 2
    assert await _count(sessionmaker, Delivery) == 1


async def test_on_accepted_fires_after_commit_only_when_deliveries_exist(sessionmaker) -> None:
    seen: list[int] = []

    async def count_now() -> None:
        seen.append(await _count(sessionmaker, Delivery))

    inbox = Inbox(sessionmaker, on_accepted=lambda: seen.append(-1))
    await inbox.accept(source="s", external_id="no-deliveries", payload={})
    assert seen == []
    await inbox.accept(
        source="s", external_id="one", payload={}, deliveries=[DeliveryRequest("d", {})]
    )
    assert seen == [-1]
    await count_now()
    assert seen == [-1, 1]


async def test_within_runs_in_its_own_transaction_and_adds_deliveries(sessionmaker) -> None:
    inbox = Inbox(sessionmaker)
    calls = []

    async def within(session, event_id):
        calls.append(event_id)
        return [DeliveryRequest("extra", {"from": event_id})]

    first = await inbox.accept(
        source="s",
        external_id="w",
        payload={},
        ack={"a": 1},
        deliveries=[DeliveryRequest("d", {})],
        within=within,
    )
    second = await inbox.accept(
        source="s", external_id="w", payload={}, ack={"a": 2}, within=within
    )
    assert calls == [first.inbox_event_id]
    assert len(first.delivery_ids) == 2 and second.ack == {"a": 1} and not second.is_new


async def test_within_failure_rolls_back_the_event(sessionmaker) -> None:
    inbox = Inbox(sessionmaker)

    async def within(session, event_id):
        raise RuntimeError("mapping failed")

    try:
        await inbox.accept(
            source="s",
            external_id="w",
            payload={},
            deliveries=[DeliveryRequest("d", {})],
            within=within,
        )
    except RuntimeError:
        pass
    else:
        raise AssertionError("within's error must reach the caller")
    assert await _count(sessionmaker, InboxEvent) == 0
    assert await _count(sessionmaker, Delivery) == 0


async def test_batches_in_flight_are_capped_and_later_calls_join_the_next_one(
    sessionmaker,
) -> None:
    inbox = Inbox(sessionmaker, window_ms=0, max_batch=256, max_inflight=1)
    sizes: list[int] = []
    in_flight = peak = 0
    write_batch = inbox._write_batch

    async def observed(batch):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        sizes.append(len(batch))
        try:
            await asyncio.sleep(0.02)  # a slow commit: calls keep arriving meanwhile
            return await write_batch(batch)
        finally:
            in_flight -= 1

    inbox._write_batch = observed  # type: ignore[method-assign]
    calls = []
    for i in range(60):
        calls.append(asyncio.create_task(inbox.accept(source="s", external_id=f"k{i}", payload={})))
        await asyncio.sleep(0.001)
    results = await asyncio.gather(*calls)
    assert all(r.is_new for r in results)
    assert peak == 1
    assert sum(sizes) == 60
    # Arrivals during a write wait for the next batch instead of opening their own.
    assert len(sizes) <= 10 and max(sizes) > 5
    assert await _count(sessionmaker, InboxEvent) == 60


async def test_drain_writes_what_is_still_queued(sessionmaker) -> None:
    inbox = Inbox(sessionmaker, window_ms=10_000, max_batch=256, max_inflight=1)
    pending = [
        asyncio.create_task(inbox.accept(source="s", external_id=f"d{i}", payload={}))
        for i in range(5)
    ]
    await asyncio.sleep(0)
    await inbox.drain()
    assert all(task.done() and task.result().is_new for task in pending)
    assert await _count(sessionmaker, InboxEvent) == 5
