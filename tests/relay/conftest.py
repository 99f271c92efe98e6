"""Relay test kit: a manual clock, a scripted in-process destination, a worker factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import Attempt, Delivery
from channel_bridge.relay.clock import ManualClock
from channel_bridge.relay.destinations import DeliveryContext, DestinationRegistry
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.worker import RelayWorker
from channel_bridge.settings import Settings
from tests.conftest import make_settings


@dataclass
class RecordingDestination:
    """Records every call; `script(ctx)` may raise a DeliveryError or return a result."""

    script: Callable[[DeliveryContext], Any] | None = None
    calls: list[DeliveryContext] = field(default_factory=list)

    async def __call__(self, ctx: DeliveryContext) -> dict[str, Any] | None:
        self.calls.append(ctx)
        if self.script is not None:
            outcome = self.script(ctx)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome  # type: ignore[no-any-return]
        return {"remoteId": f"r-{ctx.delivery_id}"}


@pytest.fixture
def clock() -> ManualClock:
    # A fixed, recent moment so rows look realistic; advanced only by the tests.
    return ManualClock(datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC))


@pytest.fixture
def relay_settings(database_url: str) -> Settings:
    # No jitter, so every scheduled delay is exact under the manual clock.
    return make_settings(database_url, retry_jitter=0.0, worker_concurrency=8)


@pytest.fixture
def registry() -> DestinationRegistry:
    return DestinationRegistry()


@pytest.fixture
def sink(registry: DestinationRegistry) -> RecordingDestination:
    destination = RecordingDestination()
    registry.register("test.sink", destination)
    return destination


@pytest.fixture
def worker(
    sessionmaker: async_sessionmaker[AsyncSession],
    registry: DestinationRegistry,
    relay_settings: Settings,
    clock: ManualClock,
) -> RelayWorker:
    return RelayWorker(sessionmaker, registry, relay_settings, clock=clock, worker_id="w-test")


@pytest.fixture
def inbox(sessionmaker: async_sessionmaker[AsyncSession], clock: ManualClock) -> Inbox:
    return Inbox(sessionmaker, clock=clock)


async def drain(
    worker: RelayWorker, clock: ManualClock, *, step_s: float = 3600.0, max_rounds: int = 2000
) -> int:
    """Run rounds until nothing is due even after moving the clock on; the rounds used."""
    for rounds in range(max_rounds):
        if await worker.run_once() == 0:
            clock.advance(step_s)
            if await worker.run_once() == 0:
                return rounds
    raise AssertionError("the outbox did not drain")


async def load_delivery(
    sessionmaker: async_sessionmaker[AsyncSession], delivery_id: int
) -> Delivery:
    async with sessionmaker() as session:
        return (
            await session.execute(select(Delivery).where(Delivery.id == delivery_id))
        ).scalar_one()


async def load_attempts(
    sessionmaker: async_sessionmaker[AsyncSession], delivery_id: int
) -> list[Attempt]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Attempt).where(Attempt.delivery_id == delivery_id).order_by(Attempt.id)
        )
        return list(rows.scalars())


async def queue_in_partition(
    inbox: Inbox, partition: str | None, count: int, *, prefix: str = "e"
) -> list[int]:
    """Accept `count` events for test.sink, one delivery each in `partition`; their ids."""
    ids = []
    for n in range(count):
        acceptance = await inbox.accept(
            source="test",
            external_id=f"{prefix}-{partition}-{n}",
            payload={},
            deliveries=[DeliveryRequest("test.sink", {"n": n}, partition)],
        )
        ids += acceptance.delivery_ids
    return ids
