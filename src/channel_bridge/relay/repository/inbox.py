"""The SQL of inbox rows: dedupe inserts, lookups, retention, group-commit inserts."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    delete,
    exists,
    null,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from channel_bridge.db.base import utcnow
from channel_bridge.db.bulk import (
    among,
    dialect_insert,
    insert_rows,
    select_by_keys,
)
from channel_bridge.db.models import InboxEvent
from channel_bridge.relay.repository.tables import (
    FINISHED_STATUSES,
    TOMBSTONE_STATUS,
    delivery_table,
    inbox_table,
)


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
        now: datetime | None = None,
    ) -> int | None:
        """Insert the event; its id if new, None if (source, external_id) was already stored."""
        statement = (
            dialect_insert(self.session, inbox_table)
            .values(
                source=source,
                external_id=external_id,
                payload=payload,
                ack=ack,
                kind=kind,
                raw_body=raw_body,
                status="received",
                received_at=now or utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["source", "external_id"])
            .returning(inbox_table.c.id)
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

    async def get_many(self, event_ids: Collection[int]) -> dict[int, InboxEvent]:
        if not event_ids:
            return {}
        rows = await self.session.scalars(
            select(InboxEvent).where(among(self.session, InboxEvent.id, list(event_ids)))
        )
        return {event.id: event for event in rows}

    async def purge_handled(self, *, before: datetime) -> int:
        """Strip the bodies of events received before `before` whose deliveries are finished.

        The row stays as a tombstone (source, external id, ack): a replay of the webhook still
        meets the unique key and gets the answer it got the first time.
        """
        result = await self.session.execute(
            update(inbox_table)
            .where(
                inbox_table.c.received_at < before,
                inbox_table.c.status != TOMBSTONE_STATUS,
                _all_deliveries_finished(),
            )
            # SQL NULL, not JSON null. The status says the body is gone (and takes a held
            # callback out of the review list, as deleting it did).
            .values(payload=null(), raw_body=null(), status=TOMBSTONE_STATUS)
        )
        return cast(CursorResult[Any], result).rowcount or 0

    async def purge_tombstones(self, *, before: datetime) -> int:
        """Delete events (tombstones by now) received before `before`, deliveries finished."""
        result = await self.session.execute(
            delete(inbox_table).where(
                inbox_table.c.received_at < before, _all_deliveries_finished()
            )
        )
        return cast(CursorResult[Any], result).rowcount or 0


def _all_deliveries_finished() -> Any:
    return ~exists().where(
        delivery_table.c.inbox_event_id == inbox_table.c.id,
        delivery_table.c.status.not_in(FINISHED_STATUSES),
    )


class InboxBatchWriter:
    """Multi-row inserts for the group-commit inbox, on one connection inside its transaction."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def insert_events(self, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], int]:
        """Insert the events that are new; (source, external_id) -> id for those only."""
        inserted = await insert_rows(
            self.connection,
            inbox_table,
            [{**row, "status": "received"} for row in rows],
            on_conflict_do_nothing=("source", "external_id"),
            returning=("id", "source", "external_id"),
        )
        return {(row.source, row.external_id): row.id for row in inserted}

    async def existing_events(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, dict[str, Any] | None]]:
        keys = list(keys)
        if not keys:
            return {}
        rows = await select_by_keys(
            self.connection,
            inbox_table,
            ("source", "external_id"),
            keys,
            ("id", "source", "external_id", "ack"),
        )
        return {(row.source, row.external_id): (row.id, row.ack) for row in rows}
