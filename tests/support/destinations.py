"""Calling one destination as the relay worker would: the stored payload decoded first."""

from __future__ import annotations

from typing import Any

from channel_bridge.relay.destinations import DeliveryContext, Destination, as_delivered


async def call_destination(
    destination: Destination,
    stored_payload: dict[str, Any],
    *,
    delivery_id: int = 1,
    partition_key: str | None = None,
) -> dict[str, Any] | None:
    """The handler's result for this stored payload (a decode failure raises PermanentError)."""
    context = DeliveryContext(
        delivery_id=delivery_id,
        destination=destination.name,
        payload=destination.decode(stored_payload),
        partition_key=partition_key,
        attempt_number=1,
        inbox_event_id=None,
    )
    return as_delivered(await destination.handler(context)).result
