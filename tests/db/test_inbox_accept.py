"""The inbox stores an event and its deliveries once; duplicates get the first answer."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from channel_bridge.db.models import Delivery, InboxEvent
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.inbox import Inbox


async def test_duplicate_accept_returns_first_ack(sessionmaker) -> None:
    inbox = Inbox(sessionmaker)
    request = DeliveryRequest(destination="test.sink", payload={"n": 1}, partition_key="c1")
    first = await inbox.accept(
        source="test",
        external_id="e1",
        payload={"a": 1},
        deliveries=[request],
        ack={"messageId": "m-1"},
    )
    second = await inbox.accept(
        source="test",
        external_id="e1",
        payload={"a": 1},
        deliveries=[request],
        ack={"messageId": "m-2"},
    )
    assert first.is_new and not second.is_new
    assert second.ack == {"messageId": "m-1"}
    assert second.inbox_event_id == first.inbox_event_id
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 1
        assert await session.scalar(select(func.count()).select_from(Delivery)) == 1


async def test_concurrent_duplicates_store_once(sessionmaker) -> None:
    inbox = Inbox(sessionmaker)
    results = await asyncio.gather(
        *[
            inbox.accept(
                source="test",
                external_id="same",
                payload={},
                ack={"messageId": f"m-{i}"},
                deliveries=[DeliveryRequest(destination="test.sink", payload={})],
            )
            for i in range(20)
        ]
    )
    assert sum(r.is_new for r in results) == 1
    assert len({r.ack["messageId"] for r in results}) == 1
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Delivery)) == 1
