"""A destination's dead-letter hook: what a dead delivery leaves behind is stored with it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from channel_bridge.db.models import Delivery
from channel_bridge.relay.destinations import DestinationRegistry
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.errors import PermanentError, RetryableError
from tests.relay.conftest import RecordingDestination, load_delivery


@pytest.fixture
def reports(registry: DestinationRegistry) -> RecordingDestination:
    destination = RecordingDestination()
    registry.register("test.report", destination)
    return destination


@pytest.fixture
def hooked(registry: DestinationRegistry) -> tuple[RecordingDestination, list[Any]]:
    """`test.hooked`: its dead letters ask for a `test.report` naming the failed text."""
    destination = RecordingDestination()
    seen: list[Any] = []

    def on_dead(payload: Any) -> list[DeliveryRequest]:
        seen.append(payload)
        if payload.get("silent"):
            return []
        return [
            DeliveryRequest(
                "test.report", {"failed": payload["text"]}, partition_key="report-partition"
            )
        ]

    registry.register("test.hooked", destination, on_dead=on_dead)
    return destination, seen


async def _accept(inbox, payload: dict[str, Any]) -> tuple[int, int]:
    acceptance = await inbox.accept(
        source="test",
        external_id=f"evt-{payload['text']}",
        payload={},
        deliveries=[DeliveryRequest("test.hooked", payload, "conversation-1")],
    )
    (delivery_id,) = acceptance.delivery_ids
    return acceptance.inbox_event_id, delivery_id


async def _all_deliveries(sessionmaker) -> list[Delivery]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())


async def test_a_dead_delivery_queues_what_its_hook_returns(
    inbox, worker, hooked, reports, sessionmaker, clock
) -> None:
    destination, seen = hooked
    destination.script = lambda ctx: PermanentError("rejected", http_status=400)
    inbox_event_id, delivery_id = await _accept(inbox, {"text": "hello"})

    assert await worker.run_once() == 1
    assert seen == [{"text": "hello"}]
    dead, report = await _all_deliveries(sessionmaker)
    assert (dead.id, dead.status) == (delivery_id, "dead")
    # Stored with the dead outcome: same inbox event, pending, due now, its own partition.
    assert (report.destination, report.status, report.payload) == (
        "test.report",
        "pending",
        {"failed": "hello"},
    )
    assert report.inbox_event_id == inbox_event_id
    assert report.partition_key == "report-partition"
    assert report.next_attempt_at == clock.now()

    assert await worker.run_once() == 1
    (call,) = reports.calls
    assert call.payload == {"failed": "hello"}
    assert (await load_delivery(sessionmaker, report.id)).status == "delivered"


async def test_a_retried_or_delivered_delivery_leaves_nothing_behind(
    inbox, worker, hooked, reports, sessionmaker, clock
) -> None:
    destination, seen = hooked
    answers = iter([RetryableError("connect failed"), None])
    destination.script = lambda ctx: next(answers)
    await _accept(inbox, {"text": "later"})
    assert await worker.run_once() == 1
    clock.advance(5)
    assert await worker.run_once() == 1
    assert seen == []
    assert [d.status for d in await _all_deliveries(sessionmaker)] == ["delivered"]


async def test_a_hook_that_returns_nothing_or_fails_leaves_the_dead_letter_alone(
    inbox, worker, hooked, reports, sessionmaker, registry
) -> None:
    destination, seen = hooked
    destination.script = lambda ctx: PermanentError("rejected", http_status=422)
    await _accept(inbox, {"text": "quiet", "silent": True})
    assert await worker.run_once() == 1
    assert seen == [{"text": "quiet", "silent": True}]
    assert [d.status for d in await _all_deliveries(sessionmaker)] == ["dead"]

    def broken(payload: Any) -> list[DeliveryRequest]:
        raise RuntimeError("bug in a hook")

    registry.register("test.broken", destination, on_dead=broken)
    acceptance = await inbox.accept(
        source="test",
        external_id="evt-broken",
        payload={},
        deliveries=[DeliveryRequest("test.broken", {"text": "x"})],
    )
    assert await worker.run_once() == 1
    (delivery_id,) = acceptance.delivery_ids
    assert (await load_delivery(sessionmaker, delivery_id)).status == "dead"
    assert len(await _all_deliveries(sessionmaker)) == 2
