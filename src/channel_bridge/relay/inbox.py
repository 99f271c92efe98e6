"""The durable inbox: store an inbound event and its deliveries in one transaction, once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.relay.envelope import Acceptance, DeliveryRequest
from channel_bridge.relay.repository import DeliveryRepository, InboxRepository

# Extra work done in the accept transaction, only for a new event (e.g. upsert a mapping).
# It may return more deliveries to queue with the event.
WithinAccept = Callable[[AsyncSession, int], Awaitable[Sequence[DeliveryRequest] | None]]


class Inbox:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        on_accepted: Callable[[], None] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._on_accepted = on_accepted

    async def accept(
        self,
        *,
        source: str,
        external_id: str,
        payload: dict[str, Any] | None,
        deliveries: Sequence[DeliveryRequest] = (),
        ack: dict[str, Any] | None = None,
        kind: str | None = None,
        raw_body: str | None = None,
        within: WithinAccept | None = None,
    ) -> Acceptance:
        """Commit the event and, if it is new, its deliveries; then return the stored answer."""
        async with self._sessionmaker() as session, session.begin():
            inbox = InboxRepository(session)
            event_id = await inbox.insert_if_new(
                source=source, external_id=external_id, payload=payload, ack=ack, kind=kind,
                raw_body=raw_body,
            )
            if event_id is None:
                existing_id, stored_ack = await inbox.get_by_key(source, external_id)
                return Acceptance(is_new=False, inbox_event_id=existing_id, ack=stored_ack)
            requests = list(deliveries)
            if within is not None:
                requests += list(await within(session, event_id) or ())
            delivery_ids = await DeliveryRepository(session).add_many(event_id, requests)
        if delivery_ids and self._on_accepted is not None:
            self._on_accepted()
        return Acceptance(is_new=True, inbox_event_id=event_id, ack=ack, delivery_ids=delivery_ids)
