"""`AxpPlatform`: the AXP clients of one process, sharing one authenticated HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.mappings.repository import IntegrationRepository
from channel_bridge.media import MediaTransfers
from channel_bridge.platforms.axp.auth import TokenCache, axp_configured, build_axp_http
from channel_bridge.platforms.axp.client import AxpMessagingClient
from channel_bridge.platforms.axp.media import AxpMediaStore
from channel_bridge.platforms.axp.subscriptions import (
    AxpSubscriptions,
    callback_url_for,
    reconcile_forever,
)
from channel_bridge.settings import Settings


@dataclass(slots=True)
class AxpPlatform:
    settings: Settings
    http: httpx.AsyncClient
    account_id: str
    messaging: AxpMessagingClient
    media: AxpMediaStore
    subscriptions: AxpSubscriptions

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> AxpPlatform:
        """Build the clients; raises AxpNotConfigured if BRIDGE_AXP_* settings are missing."""
        http = build_axp_http(settings, transport=transport, cache=TokenCache(), clock=clock)
        assert settings.axp_account_id and settings.axp_base_url
        account_id = settings.axp_account_id
        return cls(
            settings=settings,
            http=http,
            account_id=account_id,
            messaging=AxpMessagingClient(http, account_id),
            media=AxpMediaStore(
                http,
                account_id,
                settings.axp_base_url,
                settings.axp_media_max_bytes,
                media_store_path=settings.axp_media_store_path,
                transfers=MediaTransfers.from_settings(settings),
            ),
            subscriptions=AxpSubscriptions(http, account_id),
        )

    @property
    def callback_url(self) -> str:
        return callback_url_for(
            self.settings.public_base_url, self.settings.axp_callback_token.get_secret_value()
        )

    @property
    def event_types(self) -> list[str]:
        return list(self.settings.axp_subscription_event_types)

    async def aclose(self) -> None:
        await self.http.aclose()


async def start_axp_platform(
    settings: Settings,
    stack: AsyncExitStack,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    transport: httpx.AsyncBaseTransport | None = None,
) -> AxpPlatform | None:
    """Lifespan step: the platform (None unless AXP is configured) and the subscription
    reconcile task, both undone when the stack closes.

    `transport` (tests, the sandbox) reaches a simulated AXP in-process instead of the network.
    """
    if not axp_configured(settings):
        return None
    platform = AxpPlatform.from_settings(settings, transport=transport)
    stack.push_async_callback(platform.aclose)
    if not settings.axp_subscription_reconcile_enabled:
        return platform

    async def provider_ids() -> list[str]:
        async with sessionmaker() as session:
            return await IntegrationRepository(session).known_channel_provider_ids(
                account_id=platform.account_id
            )

    task = asyncio.create_task(
        reconcile_forever(
            platform.subscriptions,
            provider_ids=provider_ids,
            callback_url=platform.callback_url,
            event_types=platform.event_types,
            interval_s=settings.axp_subscription_reconcile_s,
        ),
        name="axp-subscription-reconcile",
    )

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
    return platform
