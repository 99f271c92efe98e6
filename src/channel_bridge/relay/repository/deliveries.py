"""The SQL of deliveries and attempts: insert, claim with a lease, outcomes, operator views."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    CursorResult,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge import jsondoc
from channel_bridge.db.base import JsonDoc, UTCDateTime, utcnow
from channel_bridge.db.bulk import (
    Dependent,
    among,
    fetch_text,
    insert_rows,
    is_postgres,
)
from channel_bridge.db.models import Attempt, Delivery, DeliveryStatus
from channel_bridge.relay.envelope import DELIVERY_SEQUENCE, DeliveryRequest, RowsNamingDeliveries
from channel_bridge.relay.repository.sequence import next_sequence
from channel_bridge.relay.repository.tables import (
    BLOCKING_STATUSES,
    FINISHED_STATUSES,
    attempt_table,
    delivery_table,
)

# Woken by NOTIFY after accept commits deliveries (PostgreSQL only).
NOTIFY_CHANNEL = "bridge_deliveries"


def delivery_row(
    inbox_event_id: int | None, request: DeliveryRequest, *, now: datetime
) -> dict[str, Any]:
    """The column values of a new pending delivery, due at `now`."""
    return {
        "inbox_event_id": inbox_event_id,
        "destination": request.destination,
        "partition_key": request.partition_key,
        "sequence": next_sequence(),
        "payload": request.stored_payload(),
        "status": DeliveryStatus.PENDING,
        "attempt_count": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "skipped": False,
    }


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
    # Claimed as its circuit breaker's single probe (relay/circuits.py).
    probe: bool = False


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """A delivery's next state after an attempt, written only while its lease is held.

    `status` None keeps the delivery in flight (an immediate retry with fresh credentials
    follows); the other fields then only count the attempt. `counted` False leaves the
    attempt out of the delivery's retry budget (a circuit breaker's failed probe, a throttled
    attempt that paused the upstream).
    """

    delivery_id: int
    attempt_number: int
    status: str | None
    now: datetime
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    result: dict[str, Any] | None = None
    counted: bool = True

    @property
    def budget_used(self) -> int:
        return self.attempt_number if self.counted else self.attempt_number - 1


# The claim on PostgreSQL, one statement: expired leases, then due heads of line (a head has
# nothing earlier pending or in flight in its partition), leased in the same statement; dead
# deliveries that a claimed later one passes over are flagged `skipped`. SKIP LOCKED lets
# concurrent claims take disjoint rows instead of queueing on each other.
#
# No ORDER BY on the due rows: sorting them made the planner read every pending row (and test
# each against its partition) before the LIMIT, 12-17 ms per claim in a 6,000-delivery drain
# with statistics from before the burst. Unsorted, every plan over ix_deliveries_due stops at
# the LIMIT; rows come in index or physical order, both oldest first in practice, and a
# partition's head is always its oldest open delivery, so order within a conversation holds.
#
# A candidate is a head when it is the first open delivery of its partition: a scalar subquery
# on the partition's key, which PostgreSQL always runs as a probe of ix_deliveries_open_partition
# for that one key. Written as NOT EXISTS (anything earlier open?), it became an anti-join, and
# with statistics from a smaller outbox (a fresh install, or before a burst) the planner read the
# whole open outbox for every candidate: 17-54 ms a claim with 400-600 queued (performance.md,
# ninth round; 95,580 rows thrown away in tests/relay/test_claim_plan.py).
_PG_CLAIM = text(
    """
    WITH expired AS (
        SELECT id FROM deliveries
        WHERE status = 'in_flight' AND locked_until < :now AND destination = ANY(:destinations)
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), due AS (
        SELECT d.id FROM deliveries AS d
        WHERE d.status = 'pending' AND d.next_attempt_at <= :due_before
          AND d.destination = ANY(:destinations)
          AND (d.partition_key IS NULL OR d.id = (
              SELECT head.id FROM deliveries AS head
              WHERE head.partition_key = d.partition_key
                AND head.status IN ('pending', 'in_flight')
              ORDER BY head.sequence, head.id
              LIMIT 1))
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    ), picked AS (
        SELECT id FROM (SELECT id FROM expired UNION ALL SELECT id FROM due) AS both_kinds
        LIMIT :limit
    ), claimed AS (
        UPDATE deliveries AS d
        SET status = 'in_flight', locked_until = :lease_until, locked_by = :worker_id,
            attempt_count = d.attempt_count + 1, updated_at = :now
        FROM picked WHERE d.id = picked.id
        RETURNING d.id, d.destination, d.payload, d.partition_key, d.sequence,
                  d.inbox_event_id, d.attempt_count, d.created_at
    ), skipped AS (
        UPDATE deliveries AS dead
        SET skipped = true
        FROM claimed
        WHERE dead.partition_key = claimed.partition_key AND dead.status = 'dead'
          AND NOT dead.skipped AND dead.sequence < claimed.sequence
    )
    SELECT id, destination, payload, partition_key, inbox_event_id,
           attempt_count AS attempt_number, created_at
    FROM claimed
    """
)

# PostgreSQL: every outcome of a batch in one statement, only where the lease is still held
# (the lease check and the write in one step, so no other writer can come between them).
_PG_STORE_OUTCOMES = """
    UPDATE deliveries AS d
    SET status = COALESCE(b.status, d.status),
        locked_until = CASE WHEN b.status IS NULL THEN d.locked_until END,
        locked_by = CASE WHEN b.status IS NULL THEN d.locked_by END,
        attempt_count = b.attempt_count,
        updated_at = b.now,
        last_error = CASE WHEN b.status IS NULL THEN d.last_error ELSE b.last_error END,
        result = COALESCE(CAST(b.result AS jsonb), d.result),
        delivered_at = CASE WHEN b.status = 'delivered' THEN b.now ELSE d.delivered_at END,
        next_attempt_at = COALESCE(b.next_attempt_at, d.next_attempt_at)
    FROM unnest(CAST(:id AS bigint[]), CAST(:status AS text[]), CAST(:attempt_count AS integer[]),
                CAST(:now AS timestamptz[]), CAST(:last_error AS text[]),
                CAST(:result AS text[]), CAST(:next_attempt_at AS timestamptz[]))
         AS b(id, status, attempt_count, now, last_error, result, next_attempt_at)
    WHERE d.id = b.id AND d.status = 'in_flight' AND d.locked_by = :worker_id
"""
_PG_RECORD_OUTCOMES = text(_PG_STORE_OUTCOMES + "RETURNING d.id")

# The same, for a batch that sends deliveries back to wait for a retry: each takes the rows
# queued behind it in its partition along (`behind`), their next_attempt_at raised to its own.
# They cannot be claimed before it anyway, and left at their arrival time they stayed in the
# claim's due range, where every claim tested each against its waiting head and claimed
# nothing: 300 ms a claim with 50,000 queued behind 1,000 waiting heads (performance.md,
# eleventh round). A row is raised once per retry of its head; whatever lets a waiting head go
# early lowers them again (`_RELEASE_BEHIND`, `make_pending_due`). Batches of deliveries only
# sent (nearly all of them) keep the plain statement.
_PG_RECORD_OUTCOMES_HOLDING_QUEUES = text(
    f"""
    WITH stored AS ({_PG_STORE_OUTCOMES}
        RETURNING d.id, d.status, d.partition_key, d.sequence, d.next_attempt_at
    ), behind AS (
        UPDATE deliveries AS queued
        SET next_attempt_at = waiting.next_attempt_at
        FROM stored AS waiting
        WHERE waiting.status = 'pending' AND waiting.partition_key IS NOT NULL
          AND queued.partition_key = waiting.partition_key AND queued.status = 'pending'
          AND (queued.sequence, queued.id) > (waiting.sequence, waiting.id)
          AND queued.next_attempt_at < waiting.next_attempt_at
    )
    SELECT id FROM stored
    """  # noqa: S608 (a constant of this module)
)

# SQLite: one statement for every outcome kind, executed for many rows at once (executemany).
_RECORD_OUTCOME = (
    update(delivery_table)
    .where(delivery_table.c.id == bindparam("b_id"))
    .values(
        status=func.coalesce(bindparam("b_status", type_=String()), delivery_table.c.status),
        locked_until=case(
            (bindparam("b_release", type_=Boolean()), None), else_=delivery_table.c.locked_until
        ),
        locked_by=case(
            (bindparam("b_release", type_=Boolean()), None), else_=delivery_table.c.locked_by
        ),
        attempt_count=bindparam("b_attempt_count", type_=Integer()),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
        last_error=case(
            (bindparam("b_release", type_=Boolean()), bindparam("b_last_error", type_=Text())),
            else_=delivery_table.c.last_error,
        ),
        result=func.coalesce(bindparam("b_result", type_=JsonDoc), delivery_table.c.result),
        delivered_at=func.coalesce(
            bindparam("b_delivered_at", type_=UTCDateTime()), delivery_table.c.delivered_at
        ),
        next_attempt_at=func.coalesce(
            bindparam("b_next_attempt_at", type_=UTCDateTime()), delivery_table.c.next_attempt_at
        ),
    )
)

# The rows queued behind a delivery in its partition, for the two statements below.
_head = delivery_table.alias("head")


def _of_head(column: Any) -> Any:
    return select(column).where(_head.c.id == bindparam("b_id")).scalar_subquery()


_BEHIND_HEAD = and_(
    delivery_table.c.status == literal_column("'pending'"),
    delivery_table.c.partition_key == _of_head(_head.c.partition_key),
    or_(
        delivery_table.c.sequence > _of_head(_head.c.sequence),
        and_(
            delivery_table.c.sequence == _of_head(_head.c.sequence),
            delivery_table.c.id > bindparam("b_id"),
        ),
    ),
)

# SQLite: a delivery sent back to wait takes the rows queued behind it along (the `behind` step
# of _PG_RECORD_OUTCOMES_HOLDING_QUEUES, and why), executed for many rows at once.
_RAISE_BEHIND = (
    update(delivery_table)
    .where(
        _BEHIND_HEAD,
        delivery_table.c.next_attempt_at < bindparam("b_next_attempt_at", type_=UTCDateTime()),
    )
    .values(next_attempt_at=bindparam("b_next_attempt_at", type_=UTCDateTime()))
)

# A delivery let go before its retry time (replayed, cancelled, marked failed) lets go of the
# rows that took its wait: never-attempted ones behind it are due again. An attempted one keeps
# its own retry time.
_RELEASE_BEHIND = (
    update(delivery_table)
    .where(
        _BEHIND_HEAD,
        delivery_table.c.attempt_count == 0,
        delivery_table.c.next_attempt_at > bindparam("b_now", type_=UTCDateTime()),
    )
    .values(next_attempt_at=bindparam("b_now", type_=UTCDateTime()))
)


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_rows(
        self,
        rows: Sequence[dict[str, Any]],
        naming: Sequence[RowsNamingDeliveries] = (),
    ) -> dict[int, int]:
        """Insert new delivery rows (from `delivery_row`) and the rows `naming` them;
        sequence -> id.

        On PostgreSQL it is one statement: it also writes `naming`'s rows and NOTIFYs
        `NOTIFY_CHANNEL` (delivered on commit), so workers in other processes hear of them,
        without a round trip of either's own.
        """
        inserted = await insert_rows(
            self.session,
            delivery_table,
            rows,
            returning=("id", "sequence"),
            notify=NOTIFY_CHANNEL,
            dependents=[
                Dependent(
                    rows.table,
                    rows.rows,
                    column=rows.delivery_column,
                    by=DELIVERY_SEQUENCE,
                    match="sequence",
                )
                for rows in naming
            ],
        )
        return {row.sequence: row.id for row in inserted}

    async def add_many(
        self,
        inbox_event_id: int | None,
        requests: Sequence[DeliveryRequest],
        *,
        now: datetime | None = None,
    ) -> list[int]:
        now = now or utcnow()
        rows = [delivery_row(inbox_event_id, request, now=now) for request in requests]
        by_sequence = await self.insert_rows(rows)
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
        due_before: datetime | None = None,
    ) -> list[ClaimedDelivery]:
        """Lease due deliveries whose partition has nothing earlier pending or in flight.

        `due_before` (default `now`) is how far ahead a pending delivery counts as due: a
        circuit breaker's probe takes the oldest head whatever its own retry time. The caller
        holds the claim transaction (BEGIN IMMEDIATE on SQLite) and commits it before making
        any call.
        """
        if not destinations or limit <= 0:
            return []
        lease_until = now + timedelta(seconds=lease_s)
        if is_postgres(self.session):
            # On the driver: one fixed statement, without the session's result layers. Its
            # payload comes back decoded (the connection's jsonb codec), created_at aware UTC,
            # and attempt_number is the attempt this claim counted (RETURNING gives the row
            # after the update).
            rows = await fetch_text(
                self.session,
                _PG_CLAIM,
                {
                    "now": now,
                    "due_before": due_before or now,
                    "destinations": list(destinations),
                    "limit": limit,
                    "lease_until": lease_until,
                    "worker_id": worker_id,
                },
            )
        else:
            rows = await self._claim_sqlite(
                destinations=destinations,
                limit=limit,
                now=now,
                due_before=due_before or now,
                lease_until=lease_until,
                worker_id=worker_id,
            )
        return [
            ClaimedDelivery(
                id=row.id,
                destination=row.destination,
                payload=row.payload,
                partition_key=row.partition_key,
                inbox_event_id=row.inbox_event_id,
                attempt_number=row.attempt_number,
                created_at=row.created_at,
            )
            for row in rows
        ]

    async def _claim_sqlite(
        self,
        *,
        destinations: Sequence[str],
        limit: int,
        now: datetime,
        due_before: datetime,
        lease_until: datetime,
        worker_id: str,
    ) -> list[Any]:
        d = delivery_table.alias("d")
        earlier = delivery_table.alias("earlier")
        # Statuses as literals: SQLite uses a partial index only when the query names its
        # predicate's values, not bound parameters.
        blocked = exists().where(
            earlier.c.partition_key == d.c.partition_key,
            earlier.c.status.in_([literal_column(f"'{s}'") for s in BLOCKING_STATUSES]),
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
            # The attempt this claim counts (the update below adds it to the row).
            (d.c.attempt_count + 1).label("attempt_number"),
            d.c.created_at,
        )
        wanted = d.c.destination.in_(list(destinations))
        # An expired lease: the worker holding it died or hung; the row is claimable again.
        expired = (
            select(*columns)
            .where(d.c.status == literal_column("'in_flight'"), d.c.locked_until < now, wanted)
            .limit(limit)
        )
        rows = list((await self.session.execute(expired)).all())
        if len(rows) < limit:
            # Due pending rows in due order, straight off ix_deliveries_due: the scan stops at
            # `limit` instead of sorting every due row on each claim.
            due = (
                select(*columns)
                .where(
                    d.c.status == literal_column("'pending'"),
                    d.c.next_attempt_at <= due_before,
                    wanted,
                    ~blocked,
                )
                .order_by(d.c.next_attempt_at)
                .limit(limit - len(rows))
            )
            rows += (await self.session.execute(due)).all()
        if not rows:
            return []
        ids = [row.id for row in rows]
        await self.session.execute(
            update(delivery_table)
            .where(among(self.session, delivery_table.c.id, ids))
            .values(
                status=DeliveryStatus.IN_FLIGHT,
                locked_until=lease_until,
                locked_by=worker_id,
                attempt_count=delivery_table.c.attempt_count + 1,
                updated_at=now,
            )
        )
        partitions = {row.partition_key for row in rows if row.partition_key is not None}
        if partitions:
            await self._mark_dead_skipped(partitions, before_ids=ids)
        return rows

    async def _mark_dead_skipped(self, partitions: set[str], *, before_ids: list[int]) -> None:
        """Dead deliveries that a claimed later one passes over are flagged `skipped`."""
        claimed = delivery_table.alias("claimed")
        later_claimed = exists().where(
            among(self.session, claimed.c.id, before_ids),
            claimed.c.partition_key == delivery_table.c.partition_key,
            claimed.c.sequence > delivery_table.c.sequence,
        )
        await self.session.execute(
            update(delivery_table)
            .where(
                delivery_table.c.status == DeliveryStatus.DEAD,
                delivery_table.c.skipped.is_(False),
                among(self.session, delivery_table.c.partition_key, partitions),
                later_claimed,
            )
            .values(skipped=True)
        )

    async def add_attempts(self, rows: Sequence[dict[str, Any]]) -> None:
        await insert_rows(self.session, attempt_table, rows)

    async def record_outcomes(self, outcomes: Sequence[OutcomeRow], *, worker_id: str) -> set[int]:
        """Store each outcome whose lease this worker still holds; the ids stored.

        A delivery whose lease expired and was claimed by another worker is left as that
        worker has it: this worker's outcome is dropped, never written over the new one.
        """
        if not outcomes:
            return set()
        ordered = sorted(outcomes, key=lambda outcome: outcome.delivery_id)
        if is_postgres(self.session):
            # One statement: the lease check and every update (executemany plus a check
            # query was two round trips and most of the outcome write's CPU).
            sends_back = any(
                o.status == DeliveryStatus.PENDING and o.next_attempt_at is not None
                for o in ordered
            )
            stored = await fetch_text(
                self.session,
                _PG_RECORD_OUTCOMES_HOLDING_QUEUES if sends_back else _PG_RECORD_OUTCOMES,
                {
                    "worker_id": worker_id,
                    "id": [o.delivery_id for o in ordered],
                    "status": [o.status for o in ordered],
                    "attempt_count": [o.budget_used for o in ordered],
                    "now": [o.now for o in ordered],
                    "last_error": [o.last_error for o in ordered],
                    "result": [
                        jsondoc.dumps(o.result)
                        if o.status == DeliveryStatus.DELIVERED and o.result is not None
                        else None
                        for o in ordered
                    ],
                    "next_attempt_at": [o.next_attempt_at for o in ordered],
                },
            )
            return {row.id for row in stored}
        held = await self._held_leases([o.delivery_id for o in ordered], worker_id=worker_id)
        rows = [
            {
                "b_id": outcome.delivery_id,
                "b_status": outcome.status,
                "b_release": outcome.status is not None,
                "b_attempt_count": outcome.budget_used,
                "b_now": outcome.now,
                "b_last_error": outcome.last_error,
                "b_result": outcome.result if outcome.status == DeliveryStatus.DELIVERED else None,
                "b_delivered_at": outcome.now
                if outcome.status == DeliveryStatus.DELIVERED
                else None,
                "b_next_attempt_at": outcome.next_attempt_at,
            }
            for outcome in ordered
            if outcome.delivery_id in held
        ]
        if rows:
            await self.session.execute(_RECORD_OUTCOME, rows)
            waiting = [
                {"b_id": row["b_id"], "b_next_attempt_at": row["b_next_attempt_at"]}
                for row in rows
                if row["b_status"] == DeliveryStatus.PENDING and row["b_next_attempt_at"]
            ]
            if waiting:
                await self.session.execute(_RAISE_BEHIND, waiting)
        return held

    async def _held_leases(self, delivery_ids: Sequence[int], *, worker_id: str) -> set[int]:
        """Which of these deliveries this worker still holds (SQLite: the write lock is ours)."""
        query = select(delivery_table.c.id).where(
            among(self.session, delivery_table.c.id, delivery_ids),
            delivery_table.c.status == DeliveryStatus.IN_FLIGHT,
            delivery_table.c.locked_by == worker_id,
        )
        return set((await self.session.scalars(query)).all())

    # --- operators --------------------------------------------------------------------

    async def get(self, delivery_id: int, *, for_update: bool = False) -> Delivery | None:
        query = select(Delivery).where(Delivery.id == delivery_id)
        if for_update and is_postgres(self.session):
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
        partition_keys: Sequence[str] | None = None,
        partition_patterns: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        """Newest first; `before_id` continues a previous page.

        `partition_keys` matches any of those keys exactly; `partition_patterns` any of those
        LIKE patterns (with `\\` as the escape character).
        """
        query = select(Delivery)
        if status:
            query = query.where(Delivery.status == status)
        if destination:
            query = query.where(Delivery.destination == destination)
        if partition_key:
            query = query.where(Delivery.partition_key == partition_key)
        if partition_keys is not None or partition_patterns is not None:
            query = query.where(
                or_(
                    Delivery.partition_key.in_(list(partition_keys or ())),
                    *(
                        Delivery.partition_key.like(pattern, escape="\\")
                        for pattern in partition_patterns or ()
                    ),
                )
            )
        if since:
            query = query.where(Delivery.created_at >= since)
        if until:
            query = query.where(Delivery.created_at < until)
        if before_id is not None:
            query = query.where(Delivery.id < before_id)
        rows = await self.session.execute(query.order_by(Delivery.id.desc()).limit(limit))
        return list(rows.scalars())

    async def get_many(self, delivery_ids: Collection[int]) -> dict[int, Delivery]:
        if not delivery_ids:
            return {}
        rows = await self.session.scalars(
            select(Delivery).where(among(self.session, Delivery.id, list(delivery_ids)))
        )
        return {delivery.id: delivery for delivery in rows}

    async def destination_stats(self) -> list[Any]:
        """Per destination: open deliveries, dead ones, the oldest pending one's creation."""
        d = delivery_table.c
        is_open = d.status.in_(BLOCKING_STATUSES)
        rows = await self.session.execute(
            select(
                d.destination,
                func.count().filter(is_open).label("backlog"),
                func.count().filter(d.status == "dead").label("dead"),
                func.min(d.created_at).filter(d.status == "pending").label("oldest_pending_at"),
            )
            .group_by(d.destination)
            .order_by(d.destination)
        )
        return list(rows)

    async def last_errors(self) -> dict[str, tuple[datetime, str]]:
        """Per destination: the most recent attempt error and when it happened."""
        a, d = attempt_table.c, delivery_table.c
        latest = (
            select(d.destination, func.max(a.id).label("attempt_id"))
            .select_from(attempt_table.join(delivery_table, a.delivery_id == d.id))
            .where(a.error.is_not(None))
            .group_by(d.destination)
            .subquery()
        )
        rows = await self.session.execute(
            select(latest.c.destination, a.started_at, a.error).join(
                attempt_table, a.id == latest.c.attempt_id
            )
        )
        return {row.destination: (row.started_at, row.error) for row in rows}

    async def attempt_counts(self, *, since: datetime, bucket_s: int) -> list[Any]:
        """Attempts started since `since` per (destination, outcome, bucket of `bucket_s`)."""
        a, d = attempt_table.c, delivery_table.c
        epoch: Any
        if is_postgres(self.session):
            epoch = func.extract("epoch", a.started_at)
        else:
            epoch = func.cast(func.strftime("%s", a.started_at), Integer)
        bucket = func.floor(epoch / bucket_s).label("bucket")
        rows = await self.session.execute(
            select(d.destination, a.outcome, bucket, func.count().label("count"))
            .select_from(attempt_table.join(delivery_table, a.delivery_id == d.id))
            .where(a.started_at >= since)
            .group_by(d.destination, a.outcome, bucket)
        )
        return list(rows)

    async def reschedule(self, delivery_id: int, *, now: datetime) -> None:
        """Back to pending, due now, attempts counted from zero again."""
        await self.session.execute(
            update(delivery_table)
            .where(delivery_table.c.id == delivery_id)
            .values(_rescheduled(now))
        )
        await self._release_behind(delivery_id, now=now)

    async def reschedule_dead(
        self, *, since: datetime, until: datetime, destination: str | None, now: datetime
    ) -> int:
        conditions = [
            delivery_table.c.status == DeliveryStatus.DEAD,
            delivery_table.c.created_at >= since,
            delivery_table.c.created_at < until,
        ]
        if destination:
            conditions.append(delivery_table.c.destination == destination)
        result = await self.session.execute(
            update(delivery_table).where(*conditions).values(_rescheduled(now))
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
        await self._release_behind(delivery_id, now=now)

    async def _release_behind(self, delivery_id: int, *, now: datetime) -> None:
        await self.session.execute(_RELEASE_BEHIND, {"b_id": delivery_id, "b_now": now})

    # --- maintenance ----------------------------------------------------------------

    async def counts_by_status(self) -> dict[str, int]:
        rows = await self.session.execute(
            select(delivery_table.c.status, func.count()).group_by(delivery_table.c.status)
        )
        return {status: count for status, count in rows.all()}

    async def oldest_due(self, *, now: datetime) -> datetime | None:
        return await self.session.scalar(
            select(func.min(delivery_table.c.next_attempt_at)).where(
                delivery_table.c.status == DeliveryStatus.PENDING,
                delivery_table.c.next_attempt_at <= now,
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


async def make_pending_due(
    session: AsyncSession, *, destinations: Sequence[str], now: datetime
) -> int:
    """Every pending delivery of these destinations due now (a circuit closed: drain at once),
    and the never-attempted ones queued in their partitions.

    The second kind took a waiting head's retry time (_PG_RECORD_OUTCOMES_HOLDING_QUEUES) and
    may go to no circuit or another one: a conversation's own bookkeeping (a conversation event,
    a receipt record) shares the partition of its sends. Left at that time, such a row would
    hold its whole conversation back until the head's old retry time, long after the head went.
    """
    destinations = list(destinations)
    waiting = delivery_table.alias("waiting")
    partitions_of_circuit = select(waiting.c.partition_key).where(
        waiting.c.status == literal_column("'pending'"),
        waiting.c.destination.in_(destinations),
        waiting.c.partition_key.is_not(None),
    )
    result = await session.execute(
        update(delivery_table)
        .where(
            delivery_table.c.status == literal_column("'pending'"),
            delivery_table.c.next_attempt_at > now,
            or_(
                delivery_table.c.destination.in_(destinations),
                and_(
                    delivery_table.c.attempt_count == 0,
                    delivery_table.c.partition_key.in_(partitions_of_circuit),
                ),
            ),
        )
        .values(next_attempt_at=now, updated_at=now)
    )
    return cast(CursorResult[Any], result).rowcount or 0


def _rescheduled(now: datetime) -> dict[str, Any]:
    """A delivery back to pending, due now, attempts counted from zero again (replay)."""
    return {
        "status": DeliveryStatus.PENDING,
        "attempt_count": 0,
        "next_attempt_at": now,
        "locked_until": None,
        "locked_by": None,
        "skipped": False,
        "updated_at": now,
    }
