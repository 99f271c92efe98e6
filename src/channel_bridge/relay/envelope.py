"""What the relay moves: delivery requests in, acknowledgements out. No vendor words here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class DeliveryRequest:
    """One outbound call to make after the inbound event is stored."""

    destination: str
    # The destination's payload model (or a plain JSON object); stored as JSON.
    payload: BaseModel | Mapping[str, Any]
    # Deliveries sharing a partition key are attempted strictly in order (the conversation).
    partition_key: str | None = None

    def stored_payload(self) -> dict[str, Any]:
        """The payload as the JSON object the outbox row holds."""
        if isinstance(self.payload, BaseModel):
            return self.payload.model_dump(mode="json", exclude_none=True)
        return dict(self.payload)

    def with_payload(self, payload: BaseModel | Mapping[str, Any]) -> DeliveryRequest:
        return replace(self, payload=payload)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """The outcome of `Inbox.accept`: the same `ack` for the first delivery and every duplicate."""

    is_new: bool
    inbox_event_id: int
    ack: dict[str, Any] | None = None
    delivery_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class AcceptedEvent:
    """A new event inside its accept transaction, as an `AcceptStep` sees it."""

    inbox_event_id: int
    # What the caller passed to `accept` as `step_context`.
    context: Any
    deliveries: list[DeliveryRequest]
    # Each delivery's `sequence`, in the order of `deliveries`: set before they are inserted,
    # so rows that name a delivery can be written in the same statement (`RowsNamingDeliveries`).
    delivery_sequences: list[int] = field(default_factory=list)
    # Filled in once the deliveries are inserted, in the order of `deliveries`.
    delivery_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RowsNamingDeliveries:
    """New rows of another table, each naming one of the new deliveries.

    Each row holds `DELIVERY_SEQUENCE` (the delivery's entry in `AcceptedEvent.
    delivery_sequences`) and is written with `delivery_column` set to that delivery's id, in
    the delivery insert's own statement where the database allows it (PostgreSQL).
    """

    table: Table
    rows: Sequence[dict[str, Any]]
    delivery_column: str = "delivery_id"


# The key of a `RowsNamingDeliveries` row that names its delivery.
DELIVERY_SEQUENCE = "delivery_sequence"


class AcceptStep(Protocol):
    """Work a kind of event needs in its accept transaction, done once for a whole batch.

    `before_deliveries` may replace or drop each event's deliveries (for instance to carry an
    id read or created in this transaction); `rows_naming_deliveries` gives the rows written
    with them (a message link per send), and `after_deliveries` runs once they have ids, for
    what needs an id's value (each costs a statement: most steps need none). Only new events
    are passed: a redelivery runs none of them. A failed batch is retried one event per
    transaction, so a step must give the same answer when run again. `name` orders the steps
    of a batch, the same way in every transaction.
    """

    name: str

    async def before_deliveries(
        self, session: AsyncSession, events: Sequence[AcceptedEvent]
    ) -> None: ...

    def rows_naming_deliveries(
        self, events: Sequence[AcceptedEvent]
    ) -> Sequence[RowsNamingDeliveries]: ...

    async def after_deliveries(
        self, session: AsyncSession, events: Sequence[AcceptedEvent]
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Plan:
    """What an inbound event becomes: its deliveries, and the accept step they need."""

    deliveries: Sequence[DeliveryRequest] = ()
    step: AcceptStep | None = None
    # Handed to the step as `AcceptedEvent.context` (e.g. which conversation).
    step_context: Any = None
