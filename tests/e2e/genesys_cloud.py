"""End-to-end harness for a Genesys Cloud channel: the bridge, the AXP simulator and the
Genesys Cloud simulator, each a uvicorn server on its own loopback port (no Nexus at all)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.app import create_app
from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Channel
from channel_bridge.sandbox.genesys_cloud import GenesysCloudSandbox, create_genesys_cloud_sandbox
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings
from tests.conftest import make_settings
from tests.e2e.conftest import (
    ACCOUNT_ID,
    CHANNEL_PROVIDER_ID,
    INTEGRATION_ID,
    AxpStack,
    add_integration,
    axp_simulator,
    axp_values,
)
from tests.support.servers import LoopbackServer

GC_INTEGRATION_ID = "7d9b2f4e-1c3a-4e5f-8a6b-0c2d4e6f8a10"
GC_CLIENT_ID = "3a1f5c7e-9b2d-4f6a-8c0e-1d3f5a7c9e2b"
GC_CLIENT_SECRET = "e2e-gc-client-secret-6f4d2b"  # simulated credentials
GC_SECRET_TOKEN = "e2e-gc-signature-secret-token-81c3"
GC_CUSTOMER = "messaging-user@externalservice.com"


@dataclass(kw_only=True)
class GenesysCloudStack(AxpStack):
    gc: GenesysCloudSandbox
    gc_url: str

    async def webhook(self, document: dict[str, Any]) -> httpx.Response:
        """Genesys Cloud posts a signed outbound webhook to the bridge."""
        return await self.gc.emit_webhook(self.client, GC_INTEGRATION_ID, document)


async def seed_gc_channel(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    assert settings.secret_key is not None
    box = SecretBox(settings.secret_key)
    async with sessionmaker() as session, session.begin():
        add_integration(session)
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
    values = {
        **axp_values(bridge_server.url, axp_server.url),
        "genesys_cloud_api_base_url": gc_server.url,
        "genesys_cloud_login_base_url": gc_server.url,
        "genesys_cloud_client_id": GC_CLIENT_ID,
        "genesys_cloud_client_secret": GC_CLIENT_SECRET,
        **overrides,
    }
    settings = make_settings(database_url, **values)
    await seed_gc_channel(sessionmaker, settings)
    axp = axp_simulator(settings, axp_server.url, bridge_server.url)
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
