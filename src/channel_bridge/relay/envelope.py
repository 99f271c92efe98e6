"""What the relay moves: delivery requests in, acknowledgements out. No vendor words here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class DeliveryRequest:
    """One outbound call to make after the inbound event is stored."""

    destination: str
    payload: dict[str, Any]
    # Deliveries sharing a partition key are attempted strictly in order (the conversation).
    partition_key: str | None = None


@dataclass(frozen=True, slots=True)
class Acceptance:
    """The outcome of `Inbox.accept`: the same `ack` for the first delivery and every duplicate."""

    is_new: bool
    inbox_event_id: int
    ack: dict[str, Any] | None = None
    delivery_ids: list[int] = field(default_factory=list)
