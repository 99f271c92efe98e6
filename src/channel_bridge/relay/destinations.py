"""Destinations are registered by the wiring layer; the relay only knows their names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What a destination gets for one attempt."""

    delivery_id: int
    destination: str
    payload: dict[str, Any]
    partition_key: str | None
    attempt_number: int
    inbox_event_id: int | None

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and replays of this delivery (AXP: correlationId)."""
        return idempotency_key_for(self.delivery_id)


IDEMPOTENCY_KEY_PREFIX = "dlv-"


def idempotency_key_for(delivery_id: int) -> str:
    return f"{IDEMPOTENCY_KEY_PREFIX}{delivery_id}"


def delivery_id_from_idempotency_key(key: str | None) -> int | None:
    """The delivery an upstream echo refers to (e.g. AXP's correlationId), if it is one of ours."""
    digits = key[len(IDEMPOTENCY_KEY_PREFIX) :] if key else ""
    if key and key.startswith(IDEMPOTENCY_KEY_PREFIX) and digits.isdigit():
        return int(digits)
    return None


# A handler performs one delivery and returns a JSON-able result (stored on the row),
# or raises a relay.errors.DeliveryError subclass.
DeliveryHandler = Callable[[DeliveryContext], Awaitable[dict[str, Any] | None]]


class DestinationRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, DeliveryHandler] = {}

    def register(self, name: str, handler: DeliveryHandler) -> None:
        if name in self._handlers:
            raise ValueError(f"destination {name!r} is already registered")
        self._handlers[name] = handler

    def get(self, name: str) -> DeliveryHandler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)
