"""All SQL of the relay: inbox rows, deliveries, attempts."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Delivery, InboxEvent
from channel_bridge.relay.envelope import DeliveryRequest

_counter = itertools.count()


def next_sequence() -> int:
    """Monotonic ordering value for deliveries: wall-clock microseconds plus a tie-breaker."""
    return time.time_ns() // 1000 * 1000 + next(_counter) % 1000


def _insert_for(bind: AsyncConnection | AsyncSession, table: Any) -> Any:
    dialect = bind.bind.dialect.name if isinstance(bind, AsyncSession) else bind.dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


class InboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_if_new(
        self,
        *,
        source: str,
        external_id: str,
        payload: dict[str, Any] | None,
        ack: dict[str, Any] | None,
        kind: str | None,
        raw_body: str | None,
    ) -> int | None:
        """Insert the event; its id if new, None if (source, external_id) was already stored."""
        statement = (
            _insert_for(self.session, InboxEvent.__table__)
            .values(
                source=source, external_id=external_id, payload=payload, ack=ack, kind=kind,
                raw_body=raw_body, status="received", received_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["source", "external_id"])
            .returning(InboxEvent.__table__.c.id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_by_key(self, source: str, external_id: str) -> tuple[int, dict[str, Any] | None]:
        row = (
            await self.session.execute(
                select(InboxEvent.id, InboxEvent.ack).where(
                    InboxEvent.source == source, InboxEvent.external_id == external_id
                )
            )
        ).one()
        return row.id, row.ack

    async def delivery_ids_for(self, inbox_event_id: int) -> list[int]:
        rows = await self.session.execute(
            select(Delivery.id).where(Delivery.inbox_event_id == inbox_event_id).order_by(Delivery.id)
        )
        return list(rows.scalars())


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_many(
        self, inbox_event_id: int | None, requests: Sequence[DeliveryRequest]
    ) -> list[int]:
        ids = []
        now = utcnow()
        for request in requests:
            statement = (
                Delivery.__table__.insert()
                .values(
                    inbox_event_id=inbox_event_id, destination=request.destination,
                    partition_key=request.partition_key, sequence=next_sequence(),
                    payload=request.payload, status="pending", attempt_count=0,
                    next_attempt_at=now, created_at=now, updated_at=now,
                )
                .returning(Delivery.__table__.c.id)
            )
            ids.append((await self.session.execute(statement)).scalar_one())
        return ids
