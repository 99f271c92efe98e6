"""An accept step's rows that name the new deliveries: written with the right delivery's id,
once, and on PostgreSQL in the delivery insert's own statement (both backends)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Delivery, MessageLink
from channel_bridge.mappings.repository import MessageLinkRepository
from channel_bridge.relay.envelope import (
    DELIVERY_SEQUENCE,
    AcceptedEvent,
    DeliveryRequest,
    RowsNamingDeliveries,
)
from channel_bridge.relay.inbox import Inbox


class LinkEveryDelivery:
    """A step that writes a message link per delivery, its `ack_id` the delivery's tag."""

    name = "test.link_every_delivery"

    def __init__(self) -> None:
        self.ids_after: list[list[int]] = []

    async def before_deliveries(
        self, session: AsyncSession, events: Sequence[AcceptedEvent]
    ) -> None:
        return None

    def rows_naming_deliveries(
        self, events: Sequence[AcceptedEvent]
    ) -> Sequence[RowsNamingDeliveries]:
        now = utcnow()
        return [
            MessageLinkRepository.written_with_deliveries(
                [
                    {
                        **MessageLinkRepository.pending_row(
                            "nexus_to_axp",
                            conversation_id=None,
                            ack_id=request.payload["tag"],
                            now=now,
                        ),
                        DELIVERY_SEQUENCE: sequence,
                    }
                    for event in events
                    for request, sequence in zip(
                        event.deliveries, event.delivery_sequences, strict=True
                    )
                ]
            )
        ]

    async def after_deliveries(
        self, session: AsyncSession, events: Sequence[AcceptedEvent]
    ) -> None:
        self.ids_after += [list(event.delivery_ids) for event in events]


def _requests(event: int) -> list[DeliveryRequest]:
    return [
        DeliveryRequest("test.sink", {"tag": f"e{event}-d{n}"}, f"conversation-{event}")
        for n in range(2)
    ]


async def _accept_all(inbox: Inbox, step: LinkEveryDelivery, events: range) -> list[Any]:
    return await asyncio.gather(
        *[
            inbox.accept(
                source="test",
                external_id=f"event-{event}",
                payload={"event": event},
                deliveries=_requests(event),
                step=step,
            )
            for event in events
        ]
    )


async def test_each_row_gets_the_id_of_the_delivery_it_names(sessionmaker) -> None:
    inbox = Inbox(sessionmaker, window_ms=5, max_batch=64)
    step = LinkEveryDelivery()
    answers = await _accept_all(inbox, step, range(6))
    # The same events again (a redelivery): nothing is written twice.
    again = await _accept_all(inbox, step, range(6))

    assert all(answer.is_new for answer in answers)
    assert not any(answer.is_new for answer in again)
    async with sessionmaker() as session:
        deliveries = {d.id: d for d in (await session.scalars(select(Delivery))).all()}
        links = (await session.scalars(select(MessageLink))).all()
    assert len(deliveries) == 12
    assert sorted(link.ack_id for link in links) == sorted(
        f"e{event}-d{n}" for event in range(6) for n in range(2)
    )
    for link in links:
        assert link.delivery_id is not None
        assert deliveries[link.delivery_id].payload["tag"] == link.ack_id
    # The ids reached the step afterwards too, each event's in the order of its deliveries.
    assert sorted(step.ids_after) == sorted(answer.delivery_ids for answer in answers)


async def test_one_statement_writes_the_deliveries_and_the_rows_naming_them(
    sessionmaker, backend, sent_statements
) -> None:
    inbox = Inbox(sessionmaker, window_ms=5, max_batch=64)
    await _accept_all(inbox, LinkEveryDelivery(), range(4))

    writing_links = [sql for sql, _args in sent_statements if "INTO message_links" in sql]
    if backend == "postgresql":
        [statement] = writing_links
        assert "INSERT INTO deliveries" in statement
    else:
        # SQLite: SQLAlchemy's executemany, a statement per table (none on the driver).
        assert writing_links == []
    async with sessionmaker() as session:
        assert len((await session.scalars(select(MessageLink))).all()) == 8
