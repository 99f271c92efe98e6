"""The mirror as real relay deliveries: outages retry on schedule, credential refusals go dead."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select

from channel_bridge.db.models import Attempt, Delivery
from channel_bridge.platforms.akixi.client import AkixiClient
from channel_bridge.platforms.akixi.mirror import akixi_destinations
from channel_bridge.relay.clock import ManualClock
from channel_bridge.relay.destinations import DestinationRegistry
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.worker import RelayWorker
from channel_bridge.sandbox.akixi import AkixiSimulator
from tests.akixi.conftest import akixi_settings
from tests.conftest import make_settings


@pytest.fixture
def relay_clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC))


def _worker(database_url, sessionmaker, akixi_http, relay_clock, **akixi_overrides) -> RelayWorker:
    settings = akixi_settings(**akixi_overrides)
    registry = DestinationRegistry()
    for destination in akixi_destinations(AkixiClient(akixi_http, settings), settings):
        registry.add(destination)
    relay_settings = make_settings(database_url, retry_jitter=0.0)
    return RelayWorker(sessionmaker, registry, relay_settings, clock=relay_clock, worker_id="w-ax")


async def _queue(sessionmaker, relay_clock, *requests: DeliveryRequest) -> list[int]:
    acceptance = await Inbox(sessionmaker, clock=relay_clock).accept(
        source="axp.integration", external_id="evt-1", payload={}, deliveries=requests
    )
    return list(acceptance.delivery_ids)


async def _attempts(sessionmaker, delivery_id: int) -> list[Attempt]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Attempt).where(Attempt.delivery_id == delivery_id).order_by(Attempt.number)
        )
        return list(rows)


async def _delivery(sessionmaker, delivery_id: int) -> Delivery:
    async with sessionmaker() as session:
        return await session.get(Delivery, delivery_id)


async def test_outage_retries_then_the_mirror_completes(
    database_url: str,
    sessionmaker,
    akixi_http: httpx.AsyncClient,
    simulator: AkixiSimulator,
    relay_clock: ManualClock,
) -> None:
    worker = _worker(database_url, sessionmaker, akixi_http, relay_clock)
    payload = {
        "integration_id": "int-1",
        "name": "Sales",
        "account_id": "ACC1",
        "channel_provider_id": "cp-1",
        "changed": ["created"],
    }
    (delivery_id,) = await _queue(
        sessionmaker, relay_clock, DeliveryRequest("akixi.upsert", payload, "akixi:int-1")
    )
    simulator.down = True
    assert await worker.run_once() == 1
    delivery = await _delivery(sessionmaker, delivery_id)
    assert delivery.status == "pending"
    (first,) = await _attempts(sessionmaker, delivery_id)
    assert (first.outcome, first.http_status, first.error_class) == ("retry", 503, "retryable")
    assert "503" in (first.response_excerpt or "")

    simulator.down = False
    relay_clock.advance(3600)
    assert await worker.run_once() == 1
    delivery = await _delivery(sessionmaker, delivery_id)
    assert delivery.status == "delivered"
    assert delivery.result == {
        "unique_id": None,  # assigned by Akixi (BRIDGE_AKIXI_SEND_UNIQUE_ID is off)
        "operations": ["OmnichannelIntList", "OmnichannelIntAdd"],
    }
    [entry] = simulator.entries.values()
    assert entry["Description"] == "Sales [axp-int-1]"


async def test_refused_credentials_go_dead_once_with_a_masked_excerpt(
    database_url: str,
    sessionmaker,
    akixi_http: httpx.AsyncClient,
    simulator: AkixiSimulator,
    relay_clock: ManualClock,
) -> None:
    worker = _worker(
        database_url, sessionmaker, akixi_http, relay_clock, akixi_password="wrong-password-77"
    )
    (delivery_id,) = await _queue(
        sessionmaker,
        relay_clock,
        DeliveryRequest("akixi.delete", {"integration_id": "int-1"}, "akixi:int-1"),
    )
    assert await worker.run_once() == 1
    assert (await _delivery(sessionmaker, delivery_id)).status == "dead"
    (attempt,) = await _attempts(sessionmaker, delivery_id)
    assert (attempt.outcome, attempt.error_class) == ("dead", "permanent")
    assert "10307" in (attempt.response_excerpt or "")
    assert "wrong-password-77" not in (attempt.error or "") + (attempt.response_excerpt or "")
    assert len(simulator.calls("Authenticate")) == 1
