"""End-to-end harness: the bridge, the AXP simulator and the Nexus simulator, each a uvicorn
server on its own loopback port, talking real HTTP to each other.

The bridge runs with its relay worker, a short retry schedule and the real AXP/Nexus clients
pointed at the simulators; the AXP simulator's agent answers each customer message by POSTing
MESSAGES callbacks to the bridge's callback URL over HTTP.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from channel_bridge.app import create_app
from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Channel, Conversation, Delivery, Integration, MessageLink
from channel_bridge.sandbox.axp import AxpSimulator
from channel_bridge.sandbox.nexus import NexusSandbox, create_nexus_sandbox
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings
from tests.conftest import TEST_CALLBACK_TOKEN, make_settings
from tests.support.servers import LoopbackServer

ACCOUNT_ID = "EETEST"
CLIENT_ID = "e2e-client"
CLIENT_SECRET = "e2e-client-secret-5d1c9b"  # simulated credentials
APP_KEY = "e2e-app-key-7a2f0e"
CCID = "1b0e6a0c-6a1e-4f44-9a43-3f1c2d5e7a11"
INTEGRATION_ID = "e2e-integration-0001"
CHANNEL_PROVIDER_ID = "e2e-messaging-provider"
CHANNEL = "+15550100300"
CUSTOMER = "+15557654321"
WEBHOOK_SECRET = "e2e-webhook-secret-0123456789abcdef"
API_SECRET = "e2e-api-secret-fedcba9876543210"
# Retries come quickly so an outage and its recovery fit in a test.
RETRY_SCHEDULE_S = [0.05, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]


@dataclass(kw_only=True)
class AxpStack:
    """What every end-to-end stack has: the bridge, its database and the AXP simulator."""

    settings: Settings
    bridge: FastAPI
    bridge_url: str
    client: httpx.AsyncClient
    axp: AxpSimulator
    sessionmaker: async_sessionmaker[AsyncSession]

    @property
    def callback_path(self) -> str:
        return f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications"

    async def axp_callback(self, event: dict[str, Any]) -> httpx.Response:
        """AXP posts a Digital Notification callback to the bridge."""
        return await self.client.post(self.callback_path, json=event)

    async def rows(self, model: Any, *conditions: Any) -> list[Any]:
        async with self.sessionmaker() as session:
            statement = select(model).where(*conditions).order_by(model.id)
            return list((await session.scalars(statement)).all())

    async def conversations(self) -> list[Conversation]:
        return await self.rows(Conversation)

    async def links(self, *conditions: Any) -> list[MessageLink]:
        return await self.rows(MessageLink, *conditions)

    async def deliveries(self, *conditions: Any) -> list[Delivery]:
        return await self.rows(Delivery, *conditions)

    def sends(self) -> list[dict[str, Any]]:
        """The SendAsyncMessage bodies AXP accepted, as the bridge put them on the wire."""
        return [
            request.json
            for request in self.axp.recorded(method="POST", path_contains="/custom-messaging/")
            if request.path.endswith("/messages")
        ]


@dataclass(kw_only=True)
class Stack(AxpStack):
    """Everything one end-to-end test talks to or inspects."""

    axp_url: str
    nexus: NexusSandbox
    nexus_url: str

    async def nexus_webhook(
        self, message: dict[str, Any], channel: str = CHANNEL
    ) -> httpx.Response:
        """Nexus posts a signed message to the bridge's channel webhook."""
        return await self.nexus.emit_webhook(self.client, channel, message)


def add_integration(session: AsyncSession) -> None:
    """The AXP messaging integration every end-to-end channel belongs to."""
    session.add(
        Integration(
            integration_id=INTEGRATION_ID,
            name="E2E messaging",
            account_id=ACCOUNT_ID,
            channel_provider_id=CHANNEL_PROVIDER_ID,
            status="active",
            source="admin",
            created_at=utcnow(),
            updated_at=utcnow(),
        )
    )


def axp_values(bridge_url: str, axp_url: str) -> dict[str, Any]:
    """The bridge's settings for the AXP simulator, the worker and quick retries."""
    return {
        "worker_enabled": True,
        "sandbox": False,
        "public_base_url": bridge_url,
        "axp_base_url": axp_url,
        "axp_account_id": ACCOUNT_ID,
        "axp_client_id": CLIENT_ID,
        "axp_client_secret": CLIENT_SECRET,
        "axp_app_key": APP_KEY,
        # The test registers the subscription itself; a reconcile loop would add a second one.
        "axp_subscription_reconcile_enabled": False,
        "worker_poll_interval_s": 0.05,
        "retry_schedule_s": RETRY_SCHEDULE_S,
        "retry_jitter": 0.0,
        "retry_throttled_min_s": 0.1,
        "log_level": "WARNING",
    }


def axp_simulator(settings: Settings, axp_url: str, bridge_url: str) -> AxpSimulator:
    """The AXP simulator with its agent on and the bridge's callback subscription."""
    axp = AxpSimulator(
        account_id=ACCOUNT_ID,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        app_key=APP_KEY,
        base_url=axp_url,
        agent=True,
        seed=1,
    )
    axp.add_subscription(
        channel_provider_id=CHANNEL_PROVIDER_ID,
        callback_url=f"{bridge_url}/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications",
        event_types=list(settings.axp_subscription_event_types),
    )
    return axp


async def seed_channel(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, enabled: bool = True
) -> None:
    secret_box = SecretBox(settings.secret_key)
    async with sessionmaker() as session, session.begin():
        add_integration(session)
        await session.flush()
        session.add(
            Channel(
                nexus_channel_id=CHANNEL,
                axp_account_id=ACCOUNT_ID,
                axp_channel_provider_id=CHANNEL_PROVIDER_ID,
                axp_integration_id=INTEGRATION_ID,
                axp_channel_id="Messaging",
                customer_identifier_key="phoneNumbers",
                enabled=enabled,
                webhook_secrets_encrypted=secret_box.encrypt_list([WEBHOOK_SECRET]),
                api_secret_encrypted=secret_box.encrypt(API_SECRET),
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )


@contextlib.asynccontextmanager
async def start_stack(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession], **overrides: Any
) -> AsyncIterator[Stack]:
    """Three servers on loopback: AXP simulator, Nexus simulator, then the bridge."""
    axp_server, nexus_server, bridge_server = LoopbackServer(), LoopbackServer(), LoopbackServer()
    values = {
        **axp_values(bridge_server.url, axp_server.url),
        "nexus_base_url": nexus_server.url,
        "nexus_ccid": CCID,
        **overrides,
    }
    settings = make_settings(database_url, **values)
    await seed_channel(sessionmaker, settings)
    axp = axp_simulator(settings, axp_server.url, bridge_server.url)
    nexus = NexusSandbox(ccid=CCID, signature_encoding=settings.nexus_signature_encoding)
    nexus.add_channel(CHANNEL, webhook_secret=WEBHOOK_SECRET, api_secret=API_SECRET)
    bridge = create_app(settings)

    async with (
        axp_server.serve(axp.app, lifespan="off"),
        nexus_server.serve(create_nexus_sandbox(nexus, settings), lifespan="off"),
        bridge_server.serve(bridge),
        httpx.AsyncClient(base_url=bridge_server.url, timeout=10.0) as client,
    ):
        try:
            yield Stack(
                settings=settings,
                bridge=bridge,
                bridge_url=bridge_server.url,
                client=client,
                axp=axp,
                axp_url=axp_server.url,
                nexus=nexus,
                nexus_url=nexus_server.url,
                sessionmaker=sessionmaker,
            )
        finally:
            # Callbacks still in flight finish while the bridge is up.
            axp.agent = False
            await axp.wait_idle()


@pytest.fixture
async def stack(
    database_url: str, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Stack]:
    async with start_stack(database_url, sessionmaker) as running:
        yield running
