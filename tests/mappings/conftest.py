"""Fixtures for the mappings tests: the real app on both backends, plus row readers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from channel_bridge.db.models import Channel, Delivery, Integration
from channel_bridge.settings import Settings
from tests.conftest import TEST_ADMIN_TOKEN, TEST_CALLBACK_TOKEN, running_app

ADMIN = {"authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
CALLBACK_URL = f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/integrations"

# Values from the examples of the AXP Digital Custom Messaging spec v1.0.4 (SendAsyncMessage).
INTEGRATION_ID = "e94e278d-72e7-48cc-80fc-dba9f8dd1c36"
CHANNEL_PROVIDER_ID = "591c2529-c3a3-4062-a213-b239c18f543b"
ACCOUNT_ID = "DYNNUG"
WEBHOOK_SECRET = "whsec-7d1f0a9c3b5e2f8d6a4c1e0b"
WEBHOOK_SECRET_OLD = "whsec-old-2b4d6f8a0c1e3a5c7e9b"
API_SECRET = "apisec-5e3c1a9f7d2b8e6c4a0f"


@pytest.fixture
async def channel(sessionmaker: async_sessionmaker[AsyncSession]) -> Channel:
    """One channel of one integration, stored (for the conversation and link tests)."""
    async with sessionmaker() as session:
        session.add(Integration(integration_id=INTEGRATION_ID, status="active", source="admin"))
        await session.flush()
        channel = Channel(
            nexus_channel_id="+15559870000",
            axp_account_id=ACCOUNT_ID,
            axp_channel_provider_id=CHANNEL_PROVIDER_ID,
            axp_integration_id=INTEGRATION_ID,
        )
        session.add(channel)
        await session.commit()
        return channel


@pytest.fixture
async def bridge(
    settings: Settings, engine: AsyncEngine
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings) as (app, client):
        yield app, client


@pytest.fixture
def client(bridge: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return bridge[1]


async def count(sessionmaker: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def deliveries(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Delivery]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())


async def add_integration(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    body = {
        "integration_id": INTEGRATION_ID,
        "name": "SMS support",
        "account_id": ACCOUNT_ID,
        "channel_provider_id": CHANNEL_PROVIDER_ID,
        **overrides,
    }
    response = await client.post("/admin/v1/integrations", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


async def add_channel(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    body = {
        "nexus_channel_id": "+15559870000",
        "axp_integration_id": INTEGRATION_ID,
        "webhook_secret": WEBHOOK_SECRET,
        "api_secret": API_SECRET,
        **overrides,
    }
    response = await client.post("/admin/v1/channels", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()
