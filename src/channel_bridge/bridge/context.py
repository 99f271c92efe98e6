"""What the bridge's delivery handlers need at run time, built once in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import Channel
from channel_bridge.platforms.axp.platform import AxpPlatform
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
    axp: AxpPlatform
    nexus: NexusClient
    nexus_fields: FieldMap

    def nexus_api_secret(self, channel: Channel) -> SecretStr:
        """The channel's Nexus API secret, decrypted only for the call that signs with it."""
        if not channel.api_secret_encrypted:
            raise PermanentError(
                f"channel {channel.nexus_channel_id} has no Nexus api_secret: set it with "
                "`channel-bridge channels update`"
            )
        return self.secret_box.decrypt(channel.api_secret_encrypted)
