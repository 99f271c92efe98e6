"""Operator actions on deliveries: list, show, replay, cancel, and marking one failed later.

Each flushes its writes; the caller's transaction commits them (`deps.get_session` for a
route, `db.engine.transaction` for a command).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Attempt, Delivery, DeliveryStatus, InboxEvent
from channel_bridge.errors import BadRequest, Conflict, NotFound
from channel_bridge.relay.repository import (
    CircuitRepository,
    DeliveryRepository,
    InboxRepository,
)

MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    items: list[Delivery]
    next_cursor: str | None


def encode_cursor(delivery_id: int) -> str:
    return base64.urlsafe_b64encode(f"d:{delivery_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "d" or not value.isdigit():
            raise ValueError(cursor)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest(
            "The cursor is not valid; start again without it",
            errors=[{"field": "cursor", "message": "not a cursor from this API"}],
        ) from None


def as_utc(moment: datetime | None) -> datetime | None:
    """Aware UTC; a naive value is taken to be UTC already (the CLI accepts bare dates)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _check_window(since: datetime | None, until: datetime | None) -> None:
    if since and until and since >= until:
        raise BadRequest(
            "`since` must be before `until`",
            errors=[{"field": "since", "message": "must be before until"}],
        )


async def list_deliveries(
    session: AsyncSession,
    *,
    status: str | None = None,
    destination: str | None = None,
    partition_key: str | None = None,
    partition_keys: Sequence[str] | None = None,
    partition_patterns: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> DeliveryPage:
    """Deliveries matching the filters, newest first, one page at a time.

    `partition_keys` / `partition_patterns` (LIKE, `\\` escapes): any of them matches.
    """
    if status is not None and status not in set(DeliveryStatus):
        raise BadRequest(
            f"Unknown status {status!r}",
            errors=[{"field": "status", "message": f"one of {', '.join(DeliveryStatus)}"}],
        )
    since, until = as_utc(since), as_utc(until)
    _check_window(since, until)
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    rows = await DeliveryRepository(session).list_page(
        status=status,
        destination=destination,
        partition_key=partition_key,
        partition_keys=partition_keys,
        partition_patterns=partition_patterns,
        since=since,
        until=until,
        before_id=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    more = len(rows) > limit
    items = rows[:limit]
    return DeliveryPage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


async def get_delivery(session: AsyncSession, delivery_id: int) -> tuple[Delivery, list[Attempt]]:
    """One delivery and its attempts, oldest attempt first."""
    repository = DeliveryRepository(session)
    delivery = await repository.get(delivery_id)
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} does not exist")
    return delivery, await repository.attempts_for(delivery_id)


async def get_deliveries(
    session: AsyncSession, delivery_ids: Collection[int]
) -> dict[int, Delivery]:
    """Deliveries by id (the ones that still exist)."""
    return await DeliveryRepository(session).get_many(delivery_ids)


async def inbox_events(session: AsyncSession, event_ids: Collection[int]) -> dict[int, InboxEvent]:
    """Accepted inbound events by id (the ones retention has not removed)."""
    return await InboxRepository(session).get_many(event_ids)


async def replay_delivery(
    session: AsyncSession, delivery_id: int, *, force: bool = False, now: datetime | None = None
) -> Delivery:
    """Schedule a delivery again from attempt 1; a delivered one only with `force`."""
    now = now or utcnow()
    repository = DeliveryRepository(session)
    delivery = await repository.get(delivery_id, for_update=True)
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} does not exist")
    if delivery.status == DeliveryStatus.IN_FLIGHT:
        raise Conflict(f"Delivery {delivery_id} is being attempted right now")
    if delivery.status == DeliveryStatus.DELIVERED and not force:
        raise Conflict(
            f"Delivery {delivery_id} was already delivered; replay with force to send it again"
        )
    await repository.reschedule(delivery_id, now=now)
    await session.flush()
    await session.refresh(delivery)
    return delivery


async def replay_dead(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    max_window_days: int,
    destination: str | None = None,
    now: datetime | None = None,
) -> int:
    """Schedule again every dead delivery created in [since, until); the count."""
    since, until = as_utc(since), as_utc(until)  # type: ignore[assignment]
    _check_window(since, until)
    if until - since > timedelta(days=max_window_days):
        raise BadRequest(
            f"The window may span at most {max_window_days} days",
            errors=[{"field": "until", "message": f"at most {max_window_days} days after since"}],
        )
    count = await DeliveryRepository(session).reschedule_dead(
        since=since, until=until, destination=destination, now=now or utcnow()
    )
    await session.flush()
    return count


async def cancel_delivery(
    session: AsyncSession, delivery_id: int, *, now: datetime | None = None
) -> Delivery:
    """Stop a pending or dead delivery for good (cancelling twice is fine)."""
    repository = DeliveryRepository(session)
    delivery = await repository.get(delivery_id, for_update=True)
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} does not exist")
    if delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.IN_FLIGHT):
        raise Conflict(
            f"Delivery {delivery_id} is {delivery.status.replace('_', ' ')}; it cannot be cancelled"
        )
    if delivery.status != DeliveryStatus.CANCELLED:
        await repository.set_status(
            delivery_id, status=DeliveryStatus.CANCELLED, now=now or utcnow()
        )
        await session.flush()
        await session.refresh(delivery)
    return delivery


async def mark_delivery_failed(
    session: AsyncSession, delivery_id: int, reason: str, *, now: datetime | None = None
) -> Delivery:
    """Record that a delivery failed after the fact (e.g. a failure receipt); it is not re-sent.

    The delivery becomes `dead` (so it shows among the dead letters and can be replayed), its
    `last_error` is the reason and `result.failure` keeps the reason and time. A worker still
    holding its lease loses it, so its outcome cannot overwrite this.
    """
    now = now or utcnow()
    repository = DeliveryRepository(session)
    delivery = await repository.get(delivery_id, for_update=True)
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} does not exist")
    result: dict[str, Any] = dict(delivery.result or {})
    result["failure"] = {
        "reason": reason,
        "at": now.isoformat(),
        "previous_status": delivery.status,
    }
    await repository.set_status(
        delivery_id, status=DeliveryStatus.DEAD, now=now, last_error=reason, result=result
    )
    await session.flush()
    await session.refresh(delivery)
    return delivery


@dataclass(frozen=True, slots=True)
class CircuitStatus:
    """One upstream's circuit breaker, as operators see it."""

    name: str
    key: str
    status: str  # closed | open | paused
    consecutive_failures: int
    opened_at: datetime | None
    paused_until: datetime | None
    next_probe_at: datetime | None
    last_error: str | None


async def circuit_statuses(
    session: AsyncSession, *, now: datetime | None = None
) -> list[CircuitStatus]:
    """Every circuit the workers have recorded, in key order."""
    now = now or utcnow()
    statuses = []
    for row in await CircuitRepository(session).all():
        paused = row.paused_until is not None and row.paused_until > now
        statuses.append(
            CircuitStatus(
                name=row.key.split(":", 1)[0],
                key=row.key,
                status="open" if row.state == "open" else "paused" if paused else "closed",
                consecutive_failures=row.consecutive_failures,
                opened_at=row.opened_at,
                paused_until=row.paused_until if paused else None,
                next_probe_at=row.next_probe_at if row.state == "open" else None,
                last_error=row.last_error,
            )
        )
    return statuses


@dataclass(slots=True)
class DestinationActivity:
    """One destination's outbox now, and its attempts per time bucket over a recent window."""

    destination: str
    backlog: int = 0
    dead: int = 0
    oldest_pending_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    # One count per bucket, oldest first: attempts that delivered, and that gave up (dead).
    delivered: list[int] = field(default_factory=list)
    died: list[int] = field(default_factory=list)


async def destination_activity(
    session: AsyncSession,
    *,
    destinations: Sequence[str],
    window: timedelta = timedelta(hours=1),
    bucket: timedelta = timedelta(minutes=1),
    now: datetime | None = None,
) -> list[DestinationActivity]:
    """Backlog, dead letters, last error and recent outcomes of these destinations (and of any
    other destination that has deliveries stored), in name order."""
    now = now or utcnow()
    bucket_s = int(bucket.total_seconds())
    buckets = int(window / bucket)
    first = int(now.timestamp()) // bucket_s - buckets + 1
    repository = DeliveryRepository(session)
    found: dict[str, DestinationActivity] = {
        name: DestinationActivity(name, delivered=[0] * buckets, died=[0] * buckets)
        for name in destinations
    }

    def entry(name: str) -> DestinationActivity:
        if name not in found:
            found[name] = DestinationActivity(name, delivered=[0] * buckets, died=[0] * buckets)
        return found[name]

    for row in await repository.destination_stats():
        item = entry(row.destination)
        item.backlog, item.dead, item.oldest_pending_at = (
            row.backlog,
            row.dead,
            row.oldest_pending_at,
        )
    for name, (at, error) in (await repository.last_errors()).items():
        item = entry(name)
        item.last_error, item.last_error_at = error, at
    since = datetime.fromtimestamp(first * bucket_s, UTC)
    for row in await repository.attempt_counts(since=since, bucket_s=bucket_s):
        index = int(row.bucket) - first
        if not 0 <= index < buckets:
            continue
        item = entry(row.destination)
        if row.outcome == "delivered":
            item.delivered[index] += row.count
        elif row.outcome == "dead":
            item.died[index] += row.count
    return [found[name] for name in sorted(found)]


async def readiness_detail(session: AsyncSession) -> dict[str, Any]:
    """`/readyz`'s `destinations`: each upstream's breaker state, e.g. {"axp": "open"}."""
    statuses = await circuit_statuses(session)
    return {"destinations": {status.name: status.status for status in statuses}} if statuses else {}
