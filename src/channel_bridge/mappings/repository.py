"""SQL for channel mappings, integrations, conversations and message links."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.models import Channel, Integration


class ChannelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_nexus_channel_id(self, nexus_channel_id: str) -> Channel | None:
        return await self.session.scalar(
            select(Channel).where(Channel.nexus_channel_id == nexus_channel_id)
        )

    async def list_enabled(self) -> Sequence[Channel]:
        rows = await self.session.scalars(
            select(Channel).where(Channel.enabled.is_(True)).order_by(Channel.nexus_channel_id)
        )
        return rows.all()


class IntegrationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, integration_id: str) -> Integration | None:
        return await self.session.get(Integration, integration_id)
