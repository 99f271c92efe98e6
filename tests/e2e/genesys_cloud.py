"""End-to-end harness for a Genesys Cloud channel: the bridge, the AXP simulator and the
Genesys Cloud simulator, each a uvicorn server on its own loopback port (no Nexus at all)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.app import create_app
from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Channel, Conversation, Delivery, Integration, MessageLink
from channel_bridge.sandbox.axp import AxpSimulator
from channel_bridge.sandbox.genesys_cloud import GenesysCloudSandbox, create_genesys_cloud_sandbox
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings
from tests.conftest import TEST_CALLBACK_TOKEN, make_settings
from tests.e2e.conftest import (
    ACCOUNT_ID,
    APP_KEY,
    CHANNEL_PROVIDER_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    INTEGRATION_ID,
    RETRY_SCHEDULE_S,
)
from tests.support.servers import LoopbackServer

GC_INTEGRATION_ID = "7d9b2f4e-1c3a-4e5f-8a6b-0c2d4e6f8a10"
GC_CLIENT_ID = "3a1f5c7e-9b2d-4f6a-8c0e-1d3f5a7c9e2b"
GC_CLIENT_SECRET = "e2e-gc-client-secret-6f4d2b"  # simulated credentials
GC_SECRET_TOKEN = "e2e-gc-signature-secret-token-81c3"
GC_CUSTOMER = "messaging-user@externalservice.com"


@dataclass
class GenesysCloudStack:
    settings: Settings
    bridge: FastAPI
    bridge_url: str
    client: httpx.AsyncClient
    axp: AxpSimulator
    gc: GenesysCloudSandbox
    gc_url: str
    sessionmaker: async_sessionmaker[AsyncSession]

    async def webhook(self, document: dict[str, Any]) -> httpx.Response:
        """Genesys Cloud posts a signed outbound webhook to the bridge."""
        return await self.gc.emit_webhook(self.client, GC_INTEGRATION_ID, document)

    async def axp_callback(self, event: dict[str, Any]) -> httpx.Response:
        return await self.client.post(
            f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications", json=event
        )

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
        return [
            request.json
            for request in self.axp.recorded(method="POST", path_contains="/custom-messaging/")
            if request.path.endswith("/messages")
        ]


async def seed_gc_channel(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    assert settings.secret_key is not None
    box = SecretBox(settings.secret_key)
    async with sessionmaker() as session, session.begin():
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
        await session.flush()
        session.add(
            Channel(
                nexus_channel_id=GC_INTEGRATION_ID,
                backend="genesys-cloud",
                axp_account_id=ACCOUNT_ID,
                axp_channel_provider_id=CHANNEL_PROVIDER_ID,
                axp_integration_id=INTEGRATION_ID,
                axp_channel_id="Messaging",
                customer_identifier_key="emails",
                enabled=True,
                webhook_secrets_encrypted=box.encrypt_list([GC_SECRET_TOKEN]),
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )


@contextlib.asynccontextmanager
async def start_gc_stack(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession], **overrides: Any
) -> AsyncIterator[GenesysCloudStack]:
    """Three servers on loopback: AXP simulator, Genesys Cloud simulator, then the bridge."""
    axp_server, gc_server, bridge_server = LoopbackServer(), LoopbackServer(), LoopbackServer()
    values: dict[str, Any] = {
        "worker_enabled": True,
        "sandbox": False,
        "public_base_url": bridge_server.url,
        "axp_base_url": axp_server.url,
        "axp_account_id": ACCOUNT_ID,
        "axp_client_id": CLIENT_ID,
        "axp_client_secret": CLIENT_SECRET,
        "axp_app_key": APP_KEY,
        "axp_subscription_reconcile_enabled": False,
        "genesys_cloud_api_base_url": gc_server.url,
        "genesys_cloud_login_base_url": gc_server.url,
        "genesys_cloud_client_id": GC_CLIENT_ID,
        "genesys_cloud_client_secret": GC_CLIENT_SECRET,
        "worker_poll_interval_s": 0.05,
        "retry_schedule_s": RETRY_SCHEDULE_S,
        "retry_jitter": 0.0,
        "retry_throttled_min_s": 0.1,
        "log_level": "WARNING",
    }
    values.update(overrides)
    settings = make_settings(database_url, **values)
    await seed_gc_channel(sessionmaker, settings)

    axp = AxpSimulator(
        account_id=ACCOUNT_ID,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        app_key=APP_KEY,
        base_url=axp_server.url,
        agent=True,
        seed=1,
    )
    axp.add_subscription(
        channel_provider_id=CHANNEL_PROVIDER_ID,
        callback_url=f"{bridge_server.url}/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications",
        event_types=list(settings.axp_subscription_event_types),
    )
    gc = GenesysCloudSandbox(client_id=GC_CLIENT_ID, client_secret=GC_CLIENT_SECRET)
    gc.add_integration(
        GC_INTEGRATION_ID,
        secret_token=GC_SECRET_TOKEN,
        webhook_url=f"{bridge_server.url}/genesys-cloud/integrations/{GC_INTEGRATION_ID}/webhook",
    )
    bridge = create_app(settings)
    async with (
        axp_server.serve(axp.app, lifespan="off"),
        gc_server.serve(create_genesys_cloud_sandbox(gc), lifespan="off"),
        bridge_server.serve(bridge),
        httpx.AsyncClient(base_url=bridge_server.url, timeout=10.0) as client,
    ):
        try:
            yield GenesysCloudStack(
                settings=settings,
                bridge=bridge,
                bridge_url=bridge_server.url,
                client=client,
                axp=axp,
                gc=gc,
                gc_url=gc_server.url,
                sessionmaker=sessionmaker,
            )
        finally:
            axp.agent = False
            await axp.wait_idle()
