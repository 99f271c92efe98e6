"""All SQL of the relay: inbox rows, deliveries, attempts. SQLAlchemy Core on the hot paths."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Table,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from channel_bridge import jsondoc
from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Attempt, Delivery, InboxEvent
from channel_bridge.relay.envelope import DeliveryRequest

_counter = itertools.count()

inbox_table = cast(Table, InboxEvent.__table__)
delivery_table = cast(Table, Delivery.__table__)
attempt_table = cast(Table, Attempt.__table__)

# Statuses that hold back later deliveries of the same partition (head-of-line order).
BLOCKING_STATUSES = ("pending", "in_flight")
# Statuses the retention task may delete once old enough; dead ones wait for an operator.
FINISHED_STATUSES = ("delivered", "cancelled")

# Woken by NOTIFY after accept commits deliveries (PostgreSQL only).
NOTIFY_CHANNEL = "bridge_deliveries"


_sqlite_write_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def write_turn(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> contextlib.AbstractAsyncContextManager[Any]:
    """On SQLite, one relay write transaction at a time per engine; elsewhere nothing.

    SQLite has one writer. Connections that find it busy sleep in the busy handler (in steps
    up to 100 ms), so letting the inbox and every delivery race for it wastes most of the
    time; queueing them in-process hands the lock over without sleeping.
    """
    engine = sessionmaker.kw["bind"]
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    lock = _sqlite_write_locks.get(engine.sync_engine)
    if lock is None:
        lock = _sqlite_write_locks[engine.sync_engine] = asyncio.Lock()
    return lock


def next_sequence() -> int:
    """Monotonic ordering value for deliveries: wall-clock microseconds plus a tie-breaker."""
    return time.time_ns() // 1000 * 1000 + next(_counter) % 1000


def _dialect_name(bind: AsyncConnection | AsyncSession) -> str:
    if isinstance(bind, AsyncSession):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def _insert_for(bind: AsyncConnection | AsyncSession, table: Any) -> Any:
    return (postgresql.insert if _dialect_name(bind) == "postgresql" else sqlite.insert)(table)


def delivery_row(
    inbox_event_id: int | None, request: DeliveryRequest, *, now: datetime
) -> dict[str, Any]:
    """The column values of a new pending delivery, due at `now`."""
    return {
        "inbox_event_id": inbox_event_id,
        "destination": request.destination,
        "partition_key": request.partition_key,
        "sequence": next_sequence(),
        "payload": request.payload,
        "status": "pending",
        "attempt_count": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "skipped": False,
    }


async def notify_deliveries(connection: AsyncConnection) -> None:
    """Tell workers in other processes that deliveries are due (sent on commit; PostgreSQL only)."""
    if connection.dialect.name == "postgresql":
        await connection.execute(
            text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL}
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
            _insert_for(self.session, inbox_table)
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

    async def delivery_ids_for(self, inbox_event_id: int) -> list[int]:
        rows = await self.session.execute(
            select(Delivery.id)
            .where(Delivery.inbox_event_id == inbox_event_id)
            .order_by(Delivery.id)
        )
        return list(rows.scalars())

    async def purge_handled(self, *, before: datetime) -> int:
        """Delete events received before `before` whose deliveries are all finished."""
        unfinished = exists().where(
            delivery_table.c.inbox_event_id == inbox_table.c.id,
            delivery_table.c.status.not_in(FINISHED_STATUSES),
        )
        result = await self.session.execute(
            delete(inbox_table).where(inbox_table.c.received_at < before, ~unfinished)
        )
        return cast(CursorResult[Any], result).rowcount or 0


# PostgreSQL: a batch is one INSERT ... SELECT FROM unnest(<one array per column>), so the
# statement text is the same for every batch size. The multi-row VALUES form is a different
# statement for each size: each became its own prepared statement on each pooled connection
# (asyncpg keeps 100 per connection), which grew the process by ~10 MB per 50,000 webhooks in
# the memory benchmark and re-prepared constantly as sizes varied.
_UNNEST_EVENTS = text(
    """
    INSERT INTO inbox_events (source, external_id, kind, payload, raw_body, ack, status,
                              received_at)
    SELECT source, external_id, kind, CAST(payload AS jsonb), raw_body, CAST(ack AS jsonb),
           'received', received_at
    FROM unnest(CAST(:source AS text[]), CAST(:external_id AS text[]), CAST(:kind AS text[]),
                CAST(:payload AS text[]), CAST(:raw_body AS text[]), CAST(:ack AS text[]),
                CAST(:received_at AS timestamptz[]))
         AS batch(source, external_id, kind, payload, raw_body, ack, received_at)
    ON CONFLICT (source, external_id) DO NOTHING
    RETURNING id, source, external_id
    """
)
_UNNEST_DELIVERIES = text(
    """
    INSERT INTO deliveries (inbox_event_id, destination, partition_key, sequence, payload,
                            status, attempt_count, next_attempt_at, created_at, updated_at,
                            skipped)
    SELECT inbox_event_id, destination, partition_key, sequence, CAST(payload AS jsonb),
           status, attempt_count, next_attempt_at, created_at, updated_at, skipped
    FROM unnest(CAST(:inbox_event_id AS bigint[]), CAST(:destination AS text[]),
                CAST(:partition_key AS text[]), CAST(:sequence AS bigint[]),
                CAST(:payload AS text[]), CAST(:status AS text[]),
                CAST(:attempt_count AS integer[]), CAST(:next_attempt_at AS timestamptz[]),
                CAST(:created_at AS timestamptz[]), CAST(:updated_at AS timestamptz[]),
                CAST(:skipped AS boolean[]))
         AS batch(inbox_event_id, destination, partition_key, sequence, payload, status,
                  attempt_count, next_attempt_at, created_at, updated_at, skipped)
    RETURNING id, sequence
    """
)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else jsondoc.dumps(value)


class InboxBatchWriter:
    """Multi-row inserts for the group-commit inbox, on one connection inside its transaction."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self._postgres = connection.dialect.name == "postgresql"

    async def insert_events(self, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], int]:
        """Insert the events that are new; (source, external_id) -> id for those only."""
        if self._postgres:
            result = await self.connection.execute(
                _UNNEST_EVENTS,
                {
                    "source": [row["source"] for row in rows],
                    "external_id": [row["external_id"] for row in rows],
                    "kind": [row["kind"] for row in rows],
                    "payload": [_json_or_none(row["payload"]) for row in rows],
                    "raw_body": [row["raw_body"] for row in rows],
                    "ack": [_json_or_none(row["ack"]) for row in rows],
                    "received_at": [row["received_at"] for row in rows],
                },
            )
            return {(row.source, row.external_id): row.id for row in result}
        # SQLite: executemany form; SQLAlchemy's "insertmanyvalues" sends one multi-row INSERT
        # per page, and the statement compiles once and is cached (a `.values([...])`
        # statement is compiled anew for every batch, which cost more than the insert).
        statement = (
            _insert_for(self.connection, inbox_table)
            .on_conflict_do_nothing(index_elements=["source", "external_id"])
            .returning(inbox_table.c.id, inbox_table.c.source, inbox_table.c.external_id)
        )
        result = await self.connection.execute(statement, list(rows))
        return {(row.source, row.external_id): row.id for row in result}

    async def existing_events(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, dict[str, Any] | None]]:
        keys = list(keys)
        if not keys:
            return {}
        result = await self.connection.execute(
            select(
                inbox_table.c.id, inbox_table.c.source, inbox_table.c.external_id, inbox_table.c.ack
            ).where(tuple_(inbox_table.c.source, inbox_table.c.external_id).in_(keys))
        )
        return {(row.source, row.external_id): (row.id, row.ack) for row in result}

    async def insert_deliveries(self, rows: Sequence[dict[str, Any]]) -> dict[int, int]:
        """Insert delivery rows; sequence -> id (sequences are unique within a process)."""
        if not rows:
            return {}
        if self._postgres:
            columns = ("inbox_event_id", "destination", "partition_key", "sequence", "status")
            arrays: dict[str, list[Any]] = {
                name: [row[name] for row in rows]
                for name in (
                    *columns,
                    "attempt_count",
                    "next_attempt_at",
                    "created_at",
                    "updated_at",
                    "skipped",
                )
            }
            arrays["payload"] = [_json_or_none(row["payload"]) for row in rows]
            result = await self.connection.execute(_UNNEST_DELIVERIES, arrays)
            return {row.sequence: row.id for row in result}
        result = await self.connection.execute(
            delivery_table.insert().returning(delivery_table.c.id, delivery_table.c.sequence),
            list(rows),
        )
        return {row.sequence: row.id for row in result}


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery this worker holds a lease on, for attempt number `attempt_number`."""

    id: int
    destination: str
    payload: dict[str, Any]
    partition_key: str | None
    inbox_event_id: int | None
    attempt_number: int
    created_at: datetime


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_many(
        self,
        inbox_event_id: int | None,
        requests: Sequence[DeliveryRequest],
        *,
        now: datetime | None = None,
    ) -> list[int]:
        now = now or utcnow()
        rows = [delivery_row(inbox_event_id, request, now=now) for request in requests]
        if not rows:
            return []
        by_sequence = await InboxBatchWriter(await self.session.connection()).insert_deliveries(
            rows
        )
        return [by_sequence[row["sequence"]] for row in rows]

    # --- worker ---------------------------------------------------------------------

    async def claim_due(
        self,
        *,
        destinations: Sequence[str],
        limit: int,
        now: datetime,
        lease_s: float,
        worker_id: str,
    ) -> list[ClaimedDelivery]:
        """Lease due deliveries whose partition has nothing earlier pending or in flight.

        The caller holds the claim transaction (SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE
        on SQLite) and commits it before making any call.
        """
        if not destinations or limit <= 0:
            return []
        d = delivery_table.alias("d")
        earlier = delivery_table.alias("earlier")
        blocked = exists().where(
            earlier.c.partition_key == d.c.partition_key,
            earlier.c.status.in_(BLOCKING_STATUSES),
            or_(
                earlier.c.sequence < d.c.sequence,
                and_(earlier.c.sequence == d.c.sequence, earlier.c.id < d.c.id),
            ),
        )
        columns = (
            d.c.id,
            d.c.destination,
            d.c.payload,
            d.c.partition_key,
            d.c.inbox_event_id,
            d.c.attempt_count,
            d.c.created_at,
        )
        wanted = d.c.destination.in_(list(destinations))
        postgres = _dialect_name(self.session) == "postgresql"
        # An expired lease: the worker holding it died or hung; the row is claimable again.
        expired = (
            select(*columns)
            .where(d.c.status == "in_flight", d.c.locked_until < now, wanted)
            .limit(limit)
        )
        # Due pending rows in due order, straight off ix_deliveries_due: the scan stops at
        # `limit` instead of sorting every due row on each claim.
        due = (
            select(*columns)
            .where(d.c.status == "pending", d.c.next_attempt_at <= now, wanted, ~blocked)
            .order_by(d.c.next_attempt_at)
        )
        if postgres:
            expired = expired.with_for_update(skip_locked=True, of=d)
        rows = list((await self.session.execute(expired)).all())
        if len(rows) < limit:
            due = due.limit(limit - len(rows))
            if postgres:
                due = due.with_for_update(skip_locked=True, of=d)
            rows += (await self.session.execute(due)).all()
        if not rows:
            return []
        ids = [row.id for row in rows]
        await self.session.execute(
            update(delivery_table)
            .where(delivery_table.c.id.in_(ids))
            .values(
                status="in_flight",
                locked_until=now + timedelta(seconds=lease_s),
                locked_by=worker_id,
                attempt_count=delivery_table.c.attempt_count + 1,
                updated_at=now,
            )
        )
        partitions = {row.partition_key for row in rows if row.partition_key is not None}
        if partitions:
            await self._mark_dead_skipped(partitions, before_ids=ids)
        return [
            ClaimedDelivery(
                id=row.id,
                destination=row.destination,
                payload=row.payload,
                partition_key=row.partition_key,
                inbox_event_id=row.inbox_event_id,
                attempt_number=row.attempt_count + 1,
                created_at=row.created_at,
            )
            for row in rows
        ]

    async def _mark_dead_skipped(self, partitions: set[str], *, before_ids: list[int]) -> None:
        """Dead deliveries that a claimed later one passes over are flagged `skipped`."""
        claimed = delivery_table.alias("claimed")
        later_claimed = exists().where(
            claimed.c.id.in_(before_ids),
            claimed.c.partition_key == delivery_table.c.partition_key,
            claimed.c.sequence > delivery_table.c.sequence,
        )
        await self.session.execute(
            update(delivery_table)
            .where(
                delivery_table.c.status == "dead",
                delivery_table.c.skipped.is_(False),
                delivery_table.c.partition_key.in_(partitions),
                later_claimed,
            )
            .values(skipped=True)
        )

    async def add_attempt(self, **values: Any) -> None:
        await self.session.execute(attempt_table.insert().values(**values))

    async def add_attempts(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            # executemany form: compiled once and cached, unlike a per-batch `.values([...])`.
            await self.session.execute(attempt_table.insert(), list(rows))

    async def record_result(
        self,
        *,
        delivery_id: int,
        worker_id: str,
        attempt_number: int,
        now: datetime,
        status: str,
        next_attempt_at: datetime | None = None,
        last_error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Store the outcome if this worker still holds the lease; False if it was lost."""
        values: dict[str, Any] = {
            "status": status,
            "locked_until": None,
            "locked_by": None,
            "attempt_count": attempt_number,
            "updated_at": now,
            "last_error": last_error,
        }
        if status == "delivered":
            values.update(result=result, delivered_at=now)
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        updated = await self.session.execute(
            update(delivery_table)
            .where(
                delivery_table.c.id == delivery_id,
                delivery_table.c.status == "in_flight",
                delivery_table.c.locked_by == worker_id,
            )
            .values(**values)
        )
        return bool(cast(CursorResult[Any], updated).rowcount)

    async def extend_attempt_count(
        self, *, delivery_id: int, worker_id: str, attempt_number: int
    ) -> None:
        await self.session.execute(
            update(delivery_table)
            .where(delivery_table.c.id == delivery_id, delivery_table.c.locked_by == worker_id)
            .values(attempt_count=attempt_number)
        )

    # --- operators --------------------------------------------------------------------

    async def get(self, delivery_id: int, *, for_update: bool = False) -> Delivery | None:
        query = select(Delivery).where(Delivery.id == delivery_id)
        if for_update and _dialect_name(self.session) == "postgresql":
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def attempts_for(self, delivery_id: int) -> list[Attempt]:
        rows = await self.session.execute(
            select(Attempt).where(Attempt.delivery_id == delivery_id).order_by(Attempt.id)
        )
        return list(rows.scalars())

    async def list_page(
        self,
        *,
        status: str | None = None,
        destination: str | None = None,
        partition_key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        """Newest first; `before_id` continues a previous page."""
        query = select(Delivery)
        if status:
            query = query.where(Delivery.status == status)
        if destination:
            query = query.where(Delivery.destination == destination)
        if partition_key:
            query = query.where(Delivery.partition_key == partition_key)
        if since:
            query = query.where(Delivery.created_at >= since)
        if until:
            query = query.where(Delivery.created_at < until)
        if before_id is not None:
            query = query.where(Delivery.id < before_id)
        rows = await self.session.execute(query.order_by(Delivery.id.desc()).limit(limit))
        return list(rows.scalars())

    async def reschedule(self, delivery_id: int, *, now: datetime) -> None:
        """Back to pending, due now, attempts counted from zero again."""
        await self.session.execute(
            update(delivery_table)
            .where(delivery_table.c.id == delivery_id)
            .values(
                status="pending",
                attempt_count=0,
                next_attempt_at=now,
                locked_until=None,
                locked_by=None,
                skipped=False,
                updated_at=now,
            )
        )

    async def reschedule_dead(
        self, *, since: datetime, until: datetime, destination: str | None, now: datetime
    ) -> int:
        conditions = [
            delivery_table.c.status == "dead",
            delivery_table.c.created_at >= since,
            delivery_table.c.created_at < until,
        ]
        if destination:
            conditions.append(delivery_table.c.destination == destination)
        result = await self.session.execute(
            update(delivery_table)
            .where(*conditions)
            .values(
                status="pending",
                attempt_count=0,
                next_attempt_at=now,
                locked_until=None,
                locked_by=None,
                skipped=False,
                updated_at=now,
            )
        )
        return cast(CursorResult[Any], result).rowcount or 0

    async def set_status(
        self, delivery_id: int, *, status: str, now: datetime, **values: Any
    ) -> None:
        await self.session.execute(
            update(delivery_table)
            .where(delivery_table.c.id == delivery_id)
            .values(
                status=status,
                locked_until=None,
                locked_by=None,
                updated_at=now,
                **values,
            )
        )

    # --- maintenance ----------------------------------------------------------------

    async def counts_by_status(self) -> dict[str, int]:
        rows = await self.session.execute(
            select(delivery_table.c.status, func.count()).group_by(delivery_table.c.status)
        )
        return {status: count for status, count in rows.all()}

    async def oldest_due(self, *, now: datetime) -> datetime | None:
        return await self.session.scalar(
            select(func.min(delivery_table.c.next_attempt_at)).where(
                delivery_table.c.status == "pending", delivery_table.c.next_attempt_at <= now
            )
        )

    async def purge_finished(self, *, before: datetime) -> int:
        """Delete finished deliveries (their attempts cascade) last touched before `before`."""
        finished = select(delivery_table.c.id).where(
            delivery_table.c.status.in_(FINISHED_STATUSES), delivery_table.c.updated_at < before
        )
        await self.session.execute(
            delete(attempt_table).where(attempt_table.c.delivery_id.in_(finished))
        )
        result = await self.session.execute(
            delete(delivery_table).where(delivery_table.c.id.in_(finished))
        )
        return cast(CursorResult[Any], result).rowcount or 0
