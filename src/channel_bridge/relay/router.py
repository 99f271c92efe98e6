"""Admin API for the outbox: /admin/v1/deliveries (list, show, replay, cancel)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.engine import after_commit
from channel_bridge.db.models import DeliveryStatus
from channel_bridge.deps import AdminDep, DestinationsDep, SessionDep, SettingsDep, WorkerDep
from channel_bridge.relay import service
from channel_bridge.relay.worker import RelayWorker

NO_NUL = r"^[^\x00]*$"

router = APIRouter(prefix="/admin/v1/deliveries", tags=["deliveries"], dependencies=[AdminDep])
destinations_router = APIRouter(
    prefix="/admin/v1/destinations", tags=["deliveries"], dependencies=[AdminDep]
)

# deliveries.id is a BIGINT: a larger number is refused with a 422, never a 500.
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    worker_id: str | None
    started_at: datetime
    duration_ms: float | None
    outcome: str
    http_status: int | None
    error_class: str | None
    error: str | None
    response_excerpt: str | None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    inbox_event_id: int | None
    destination: str
    partition_key: str | None
    sequence: int
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime
    locked_until: datetime | None
    locked_by: str | None
    last_error: str | None
    result: dict[str, Any] | None
    skipped: bool
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any]
    attempts: list[AttemptOut]


class DeliveryPageOut(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class ReplayWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime
    until: AwareDatetime
    destination: str | None = Field(default=None, max_length=64)


class ReplayCount(BaseModel):
    replayed: int


def _wake_after_commit(session: AsyncSession, worker: RelayWorker | None) -> None:
    """Wake this process's worker once the replay is committed (it claims only what is)."""
    if worker is not None:
        after_commit(session, worker.wake)


@router.get("", response_model=DeliveryPageOut)
async def list_deliveries(
    session: SessionDep,
    status: DeliveryStatus | None = None,
    # PostgreSQL text holds no NUL: such a filter is a 422, not a failed query.
    destination: str | None = Query(None, max_length=64, pattern=NO_NUL),
    partition: str | None = Query(None, max_length=255, pattern=NO_NUL),
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=service.MAX_PAGE_SIZE),
) -> DeliveryPageOut:
    page = await service.list_deliveries(
        session,
        status=status,
        destination=destination,
        partition_key=partition,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return DeliveryPageOut(
        items=[DeliveryOut.model_validate(d) for d in page.items], next_cursor=page.next_cursor
    )


@router.post("/replay", response_model=ReplayCount)
async def replay_dead(
    window: ReplayWindow, session: SessionDep, settings: SettingsDep, worker: WorkerDep
) -> ReplayCount:
    count = await service.replay_dead(
        session,
        since=window.since,
        until=window.until,
        destination=window.destination,
        max_window_days=settings.replay_max_window_days,
    )
    if count:
        _wake_after_commit(session, worker)
    return ReplayCount(replayed=count)


@router.get("/{delivery_id}", response_model=DeliveryDetail)
async def show_delivery(delivery_id: DeliveryId, session: SessionDep) -> DeliveryDetail:
    delivery, attempts = await service.get_delivery(session, delivery_id)
    return DeliveryDetail(
        **DeliveryOut.model_validate(delivery).model_dump(),
        payload=delivery.payload,
        attempts=[AttemptOut.model_validate(a) for a in attempts],
    )


@router.post("/{delivery_id}/replay", response_model=DeliveryOut)
async def replay_delivery(
    delivery_id: DeliveryId, session: SessionDep, worker: WorkerDep, force: bool = False
) -> DeliveryOut:
    delivery = await service.replay_delivery(session, delivery_id, force=force)
    _wake_after_commit(session, worker)
    return DeliveryOut.model_validate(delivery)


@router.post("/{delivery_id}/cancel", response_model=DeliveryOut)
async def cancel_delivery(delivery_id: DeliveryId, session: SessionDep) -> DeliveryOut:
    return DeliveryOut.model_validate(await service.cancel_delivery(session, delivery_id))


class CircuitOut(BaseModel):
    """One upstream's circuit breaker (relay/circuits.py) and the destinations behind it."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    key: str
    status: Literal["closed", "open", "paused"]
    consecutive_failures: int
    opened_at: datetime | None
    paused_until: datetime | None
    next_probe_at: datetime | None
    last_error: str | None
    destinations: list[str]


@destinations_router.get("", summary="Each upstream's circuit breaker: closed, open or paused")
async def list_destinations(registry: DestinationsDep, session: SessionDep) -> list[CircuitOut]:
    served: dict[str, list[str]] = {}
    for destination in registry.all():
        if destination.circuit is not None:
            served.setdefault(destination.circuit.key, []).append(destination.name)
    return [
        CircuitOut(
            **{field: getattr(status, field) for field in status.__slots__},
            destinations=served.get(status.key, []),
        )
        for status in await service.circuit_statuses(session)
    ]
