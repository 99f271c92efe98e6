"""Channel rows for Nexus tests, inserted straight into the real database."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import Channel, Integration
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings


async def add_channel(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    nexus_channel_id: str,
    *,
    webhook_secrets: Sequence[str] = ("webhook-secret-one-2d8f",),
    api_secret: str | None = "api-secret-one-7c1a",
    enabled: bool = True,
    integration_id: str = "integration-1",
    backend: str = "nexus",
) -> Channel:
    assert settings.secret_key is not None
    box = SecretBox(settings.secret_key)
    async with sessionmaker() as session, session.begin():
        if await session.get(Integration, integration_id) is None:
            session.add(
                Integration(
                    integration_id=integration_id,
                    name="Test",
                    account_id="ACC1",
                    channel_provider_id="provider-1",
                )
            )
            await session.flush()
        channel = Channel(
            nexus_channel_id=nexus_channel_id,
            axp_account_id="ACC1",
            axp_channel_provider_id="provider-1",
            axp_integration_id=integration_id,
            enabled=enabled,
            backend=backend,
            webhook_secrets_encrypted=box.encrypt_list(list(webhook_secrets))
            if webhook_secrets
            else None,
            api_secret_encrypted=box.encrypt(api_secret) if api_secret else None,
        )
        session.add(channel)
    return channel
