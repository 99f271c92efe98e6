"""Leases and batched outcomes: a worker that lost its lease writes nothing over the new
holder's outcome, a conversation never has two deliveries in flight, and a handler's
bookkeeping writes commit with its outcome (or not at all)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.models import Attempt, InboxEvent
from channel_bridge.relay.destinations import (
    Delivered,
    DeliveryContext,
    DestinationRegistry,
    Write,
)
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.errors import RetryableError
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.worker import RelayWorker
from tests.conftest import make_settings
from tests.relay.conftest import load_attempts, load_delivery
from tests.support.waiting import eventually


class NoteWriter:
    """A bookkeeping write the test can see: it sets inbox_events.note in the outcome batch."""

    name = "test.note"

    def __init__(self, fail_for: set[str] | None = None) -> None:
        self.fail_for = fail_for or set()

    async def write(self, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            if row["note"] in self.fail_for:
                raise ValueError(f"cannot write {row['note']}")
        await session.execute(
            text("UPDATE inbox_events SET note = :note WHERE id = :id"),
            [{"note": row["note"], "id": row["event_id"]} for row in rows],
        )


async def _notes(sessionmaker) -> dict[int, str | None]:
    async with sessionmaker() as session:
        rows = await session.execute(select(InboxEvent.id, InboxEvent.note))
        return dict(rows.all())


async def test_a_worker_that_lost_its_lease_cannot_overwrite_the_new_holders_outcome(
    sessionmaker, relay_settings, clock
) -> None:
    notes = NoteWriter()
    first_started, release_first = asyncio.Event(), asyncio.Event()

    async def handler(ctx: DeliveryContext[dict[str, Any]]) -> Delivered:
        holder = "A" if ctx.attempt_number == 1 else "B"
        if holder == "A":
            first_started.set()
            await release_first.wait()  # hangs past its lease
        return Delivered(
            result={"by": holder},
            writes=[Write(notes, {"event_id": ctx.inbox_event_id, "note": f"written by {holder}"})],
        )

    registry = DestinationRegistry()
    registry.register("test.sink", handler)
    acceptance = await Inbox(sessionmaker, clock=clock).accept(
        source="test",
        external_id="evt-lease",
        payload={},
        deliveries=[DeliveryRequest("test.sink", {"n": 1}, "conversation-1")],
    )
    (delivery_id,) = acceptance.delivery_ids
    worker_a = RelayWorker(sessionmaker, registry, relay_settings, clock=clock, worker_id="w-A")
    worker_b = RelayWorker(sessionmaker, registry, relay_settings, clock=clock, worker_id="w-B")

    held_by_a = asyncio.create_task(worker_a.run_once())
    await asyncio.wait_for(first_started.wait(), 10)
    clock.advance(relay_settings.worker_lease_s + 1)  # A's lease expires while it hangs
    assert await worker_b.run_once() == 1
    taken_over = await load_delivery(sessionmaker, delivery_id)
    assert (taken_over.status, taken_over.result, taken_over.attempt_count) == (
        "delivered",
        {"by": "B"},
        2,
    )

    release_first.set()
    await held_by_a  # A finishes and tries to record "delivered by A" with its write
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert (delivery.status, delivery.result, delivery.attempt_count) == (
        "delivered",
        {"by": "B"},
        2,
    )
    assert delivery.updated_at == taken_over.updated_at
    # Both attempts happened and are on record; only the lease holder's bookkeeping landed.
    attempts = await load_attempts(sessionmaker, delivery_id)
    assert sorted((a.worker_id, a.number, a.outcome) for a in attempts) == [
        ("w-A", 1, "delivered"),
        ("w-B", 2, "delivered"),
    ]
    assert await _notes(sessionmaker) == {acceptance.inbox_event_id: "written by B"}


async def test_two_deliveries_of_one_conversation_never_overlap_in_flight(
    database_url, sessionmaker
) -> None:
    settings = make_settings(
        database_url,
        retry_jitter=0.0,
        retry_schedule_s=[0.01, 0.02, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05],
        worker_concurrency=16,
        worker_poll_interval_s=0.05,
        worker_claim_coalesce_ms=1.0,
    )
    conversations, per_conversation = 6, 25
    in_flight: dict[str, int] = defaultdict(int)
    overlaps: list[str] = []
    delivered: dict[str, list[int]] = defaultdict(list)
    busiest = 0
    rng = random.Random(13)

    async def handler(ctx: DeliveryContext[dict[str, Any]]) -> dict[str, Any]:
        nonlocal busiest
        partition = ctx.partition_key or ""
        in_flight[partition] += 1
        busiest = max(busiest, sum(in_flight.values()))
        try:
            if in_flight[partition] > 1:
                overlaps.append(partition)
            await asyncio.sleep(rng.uniform(0, 0.004))
            if rng.random() < 0.15:
                raise RetryableError("transient failure")
            delivered[partition].append(ctx.payload["n"])
            return {"n": ctx.payload["n"]}
        finally:
            in_flight[partition] -= 1

    registry = DestinationRegistry()
    registry.register("test.sink", handler)
    inbox = Inbox(sessionmaker)
    for n in range(per_conversation):
        await asyncio.gather(
            *(
                inbox.accept(
                    source="test",
                    external_id=f"evt-{c}-{n}",
                    payload={},
                    deliveries=[DeliveryRequest("test.sink", {"n": n}, f"conversation-{c}")],
                )
                for c in range(conversations)
            )
        )
    workers = [RelayWorker(sessionmaker, registry, settings, worker_id=f"w-{i}") for i in range(2)]
    for worker in workers:
        await worker.start()
    try:
        await eventually(
            lambda: sum(map(len, delivered.values())) >= conversations * per_conversation,
            timeout_s=60,
            what="every delivery made",
        )
    finally:
        for worker in workers:
            await worker.stop()
    assert overlaps == []
    assert busiest > 1, "deliveries of different conversations must run concurrently"
    for c in range(conversations):
        assert delivered[f"conversation-{c}"] == list(range(per_conversation))
    async with sessionmaker() as session:
        by_worker = {row for row in (await session.scalars(select(Attempt.worker_id))).all()}
    assert by_worker == {"w-0", "w-1"}, "both workers took part"


async def test_writes_commit_with_their_outcome_and_a_failing_one_spares_the_others(
    sessionmaker, relay_settings, clock
) -> None:
    notes = NoteWriter(fail_for={"note 2"})

    async def handler(ctx: DeliveryContext[dict[str, Any]]) -> Delivered:
        n = ctx.payload["n"]
        return Delivered(
            result={"n": n},
            writes=[Write(notes, {"event_id": ctx.inbox_event_id, "note": f"note {n}"})],
        )

    registry = DestinationRegistry()
    registry.register("test.sink", handler)
    inbox = Inbox(sessionmaker, clock=clock)
    accepted = [
        await inbox.accept(
            source="test",
            external_id=f"evt-{n}",
            payload={},
            deliveries=[DeliveryRequest("test.sink", {"n": n}, f"p-{n}")],
        )
        for n in range(4)
    ]
    worker = RelayWorker(sessionmaker, registry, relay_settings, clock=clock, worker_id="w-1")
    assert await worker.run_once() == 4
    for acceptance in accepted:
        (delivery_id,) = acceptance.delivery_ids
        assert (await load_delivery(sessionmaker, delivery_id)).status == "delivered"
    assert await _notes(sessionmaker) == {
        accepted[0].inbox_event_id: "note 0",
        accepted[1].inbox_event_id: "note 1",
        accepted[2].inbox_event_id: None,  # its write failed; the delivery is still recorded
        accepted[3].inbox_event_id: "note 3",
    }
