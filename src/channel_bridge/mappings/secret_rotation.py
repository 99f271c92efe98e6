"""`channel-bridge secrets rotate`: every stored secret re-encrypted under the first key.

BRIDGE_SECRET_KEY may list several keys (newest first). After the new key is put in front,
this rewrites each channel's webhook secrets and API secret as tokens of the new key, in one
transaction with the rows locked, so the old key can be removed afterwards. If any stored
secret cannot be read with any configured key, nothing is changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import Channel
from channel_bridge.mappings.repository import ChannelRepository, notify_channels_changed
from channel_bridge.security import SecretBox, SecretBoxError


@dataclass
class RotationReport:
    channels: int = 0
    secrets: int = 0
    # Nexus channel ids whose secrets no configured key decrypts (nothing was written).
    unreadable: list[str] = field(default_factory=list)


async def rotate_stored_secrets(
    sessionmaker: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> RotationReport:
    """Re-encrypt every channel secret under the first key; all or nothing."""
    report = RotationReport()
    async with sessionmaker() as session, session.begin():
        channels = await ChannelRepository(session).list_all(for_update=True)
        rotated: list[tuple[Channel, str | None, str | None]] = []
        for channel in channels:
            try:
                webhook = _rotate(secret_box, channel.webhook_secrets_encrypted)
                api = _rotate(secret_box, channel.api_secret_encrypted)
            except SecretBoxError:
                report.unreadable.append(channel.nexus_channel_id)
                continue
            rotated.append((channel, webhook, api))
            report.secrets += (webhook is not None) + (api is not None)
        if report.unreadable:
            await session.rollback()
            report.secrets = 0
            return report
        for channel, webhook, api in rotated:
            channel.webhook_secrets_encrypted = webhook
            channel.api_secret_encrypted = api
        report.channels = len(rotated)
        await session.flush()
        # Every process drops what it cached from the old tokens.
        await notify_channels_changed(session)
    return report


def _rotate(secret_box: SecretBox, token: str | None) -> str | None:
    return secret_box.rotate(token) if token else token
