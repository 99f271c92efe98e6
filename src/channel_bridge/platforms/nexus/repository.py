"""SQL the Nexus package needs beyond the shared repositories: reading stored webhooks back."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.models import InboxEvent


class StoredWebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def latest(self, source: str, limit: int) -> Sequence[InboxEvent]:
        """The newest `limit` events of `source` that kept their raw body, newest first."""
        rows = await self.session.scalars(
            select(InboxEvent)
            .where(InboxEvent.source == source, InboxEvent.raw_body.is_not(None))
            .order_by(InboxEvent.id.desc())
            .limit(limit)
        )
        return rows.all()
