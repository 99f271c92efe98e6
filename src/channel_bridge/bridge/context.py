"""What the bridge's delivery handlers need at run time, built once in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import Channel
from channel_bridge.mappings.channel_cache import ChannelCache
from channel_bridge.platforms.axp.platform import AxpPlatform
from channel_bridge.platforms.genesys_cloud.client import GenesysCloudClient
from channel_bridge.platforms.nexus.client import NexusClient
from channel_bridge.platforms.nexus.fields import FieldMap
from channel_bridge.relay.errors import PermanentError
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings


@dataclass(slots=True)
class BridgeContext:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    secret_box: SecretBox
    channels: ChannelCache
    axp: AxpPlatform
    nexus: NexusClient
    nexus_fields: FieldMap
    # None when BRIDGE_GENESYS_CLOUD_* is not configured.
    genesys_cloud: GenesysCloudClient | None = None

    async def channel(self, nexus_channel_id: str) -> Channel | None:
        """The channel mapping from the cache (see mappings/channel_cache.py for staleness)."""
        return await self.channels.get(nexus_channel_id)

    async def enabled_channel(self, nexus_channel_id: str) -> Channel:
        """The channel, checked at delivery: a channel disabled after the accept stops here."""
        channel = await self.channels.get(nexus_channel_id)
        if channel is None or not channel.enabled:
            reason = (
                "removed"
                if channel is None
                else f"disabled ({channel.disabled_reason or 'no reason'})"
            )
            raise PermanentError(f"channel {nexus_channel_id} is {reason}")
        return channel

    def nexus_api_secret(self, channel: Channel) -> SecretStr:
        """The channel's Nexus API secret, decrypted once and kept with the cached channel."""
        if not channel.api_secret_encrypted:
            raise PermanentError(
                f"channel {channel.nexus_channel_id} has no Nexus api_secret: set it with "
                "`channel-bridge channels update`"
            )
        return self.channels.secret(channel.api_secret_encrypted, self.secret_box)

    def genesys_cloud_client(self) -> GenesysCloudClient:
        """The Open Messaging client; a permanent error when Genesys Cloud is not configured."""
        if self.genesys_cloud is None:
            raise PermanentError(
                "Genesys Cloud is not configured: set BRIDGE_GENESYS_CLOUD_CLIENT_ID and "
                "BRIDGE_GENESYS_CLOUD_CLIENT_SECRET"
            )
        return self.genesys_cloud
