"""Destinations: what the relay delivers to. The wiring layer registers them; the relay knows
only their names, payload types and handlers.

A handler makes one call and reports it as `Delivered`: a JSON-able result stored on the
delivery, and the bookkeeping its platform needs (`Write`s: a conversation's new ids, a
message link's remote id). The worker commits the outcomes of a whole batch of deliveries,
with their attempts and every write, in one transaction, and only for deliveries whose lease
it still holds: bookkeeping never lands for a delivery another worker has taken over, and a
handler needs no transaction of its own. A failed call raises a `relay.errors` class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.relay.circuits import Circuit
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.errors import PermanentError

PayloadT = TypeVar("PayloadT")


@dataclass(frozen=True, slots=True)
class DeliveryContext(Generic[PayloadT]):
    """What a destination gets for one attempt; `payload` is the destination's own type."""

    delivery_id: int
    destination: str
    payload: PayloadT
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


class BatchWriter(Protocol):
    """One kind of bookkeeping write, applied once per outcome batch to all its rows.

    `name` orders the writers inside the transaction (the same order in every batch, so two
    workers' transactions never wait on each other in a cycle); `write` gets the rows of the
    deliveries whose lease was still held, and should apply them in key order for the same
    reason.
    """

    name: str

    async def write(self, session: AsyncSession, rows: Sequence[Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class Write:
    """A row for a `BatchWriter`, committed with the delivery's outcome."""

    writer: BatchWriter
    row: Any


@dataclass(frozen=True, slots=True)
class Delivered:
    """A successful attempt: the result stored on the delivery and the writes that go with it."""

    result: dict[str, Any] | None = None
    writes: Sequence[Write] = ()


# A handler performs one delivery; a plain dict (or None) is a result with no writes.
DeliveryHandler = Callable[[DeliveryContext[Any]], Awaitable[Delivered | dict[str, Any] | None]]
# What a delivery that went dead leaves behind (its decoded payload in, new deliveries out:
# for instance a failure report to the platform the message came from). Pure and quick: it
# runs as the dead outcome is recorded, and what it returns is inserted in the same
# transaction, so the report is as durable as the outcome itself.
DeadLetterHook = Callable[[Any], Sequence[DeliveryRequest]]


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    handler: DeliveryHandler
    # The payload's model; None hands the handler the stored JSON object as a dict.
    payload_type: type[BaseModel] | None = None
    # The upstream it calls, shared with other destinations (None: no breaker, no limits:
    # a destination that only writes to our own database).
    circuit: Circuit | None = None
    on_dead: DeadLetterHook | None = None

    def decode(self, stored: Mapping[str, Any]) -> Any:
        """The stored payload as the handler's type; a mismatch can never succeed: permanent."""
        if self.payload_type is None:
            return stored
        try:
            return self.payload_type.model_validate(stored)
        except ValidationError as exc:
            raise PermanentError(
                f"{self.name} payload does not match {self.payload_type.__name__}: "
                f"{exc.error_count()} error(s), first at "
                f"{'.'.join(str(part) for part in exc.errors()[0]['loc']) or 'the top level'}"
            ) from None


class DestinationRegistry:
    def __init__(self) -> None:
        self._destinations: dict[str, Destination] = {}

    def register(
        self,
        name: str,
        handler: DeliveryHandler,
        *,
        payload: type[BaseModel] | None = None,
        circuit: Circuit | None = None,
        on_dead: DeadLetterHook | None = None,
    ) -> None:
        self.add(Destination(name, handler, payload, circuit, on_dead))

    def add(self, destination: Destination) -> None:
        if destination.name in self._destinations:
            raise ValueError(f"destination {destination.name!r} is already registered")
        self._destinations[destination.name] = destination

    def get(self, name: str) -> Destination | None:
        return self._destinations.get(name)

    def names(self) -> list[str]:
        return sorted(self._destinations)

    def all(self) -> list[Destination]:
        return [self._destinations[name] for name in self.names()]


def as_delivered(outcome: Delivered | Mapping[str, Any] | None) -> Delivered:
    if isinstance(outcome, Delivered):
        return outcome
    return Delivered(result=dict(outcome) if isinstance(outcome, Mapping) else None)
