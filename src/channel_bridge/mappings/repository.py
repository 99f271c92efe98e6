"""SQL for channel mappings, integrations, conversations and message links."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Channel, Conversation, Integration, MessageLink

LINK_STATUSES = ("pending", "sent", "delivered", "read", "failed")
# A late "delivered" must not overwrite "read": a link's status only moves forward.
_LINK_RANK = {status: rank for rank, status in enumerate(LINK_STATUSES)}


def _insert_for(session: AsyncSession, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


class ChannelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_nexus_channel_id(self, nexus_channel_id: str) -> Channel | None:
        return await self.session.scalar(
            select(Channel).where(Channel.nexus_channel_id == nexus_channel_id)
        )

    async def get(self, channel_id: int) -> Channel | None:
        return await self.session.get(Channel, channel_id)

    async def list_enabled(self) -> Sequence[Channel]:
        rows = await self.session.scalars(
            select(Channel).where(Channel.enabled.is_(True)).order_by(Channel.nexus_channel_id)
        )
        return rows.all()

    async def list_all(self, *, integration_id: str | None = None) -> Sequence[Channel]:
        statement = select(Channel).order_by(Channel.nexus_channel_id)
        if integration_id is not None:
            statement = statement.where(Channel.axp_integration_id == integration_id)
        return (await self.session.scalars(statement)).all()

    async def add(self, channel: Channel) -> Channel:
        self.session.add(channel)
        await self.session.flush()
        return channel

    async def remove(self, channel: Channel) -> None:
        await self.session.execute(delete(Channel).where(Channel.id == channel.id))

    async def disable_for_integration(
        self, integration_id: str, *, reason: str, at: datetime
    ) -> list[str]:
        """Disable every enabled channel of the integration; their nexus channel ids."""
        rows = await self.session.execute(
            update(Channel)
            .where(Channel.axp_integration_id == integration_id, Channel.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason, updated_at=at)
            .returning(Channel.nexus_channel_id)
            .execution_options(synchronize_session=False)
        )
        return sorted(rows.scalars())


class IntegrationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, integration_id: str) -> Integration | None:
        return await self.session.get(Integration, integration_id)

    async def get_fresh(self, integration_id: str) -> Integration | None:
        """The row as committed now, not a copy cached in this session."""
        return await self.session.scalar(
            select(Integration)
            .where(Integration.integration_id == integration_id)
            .execution_options(populate_existing=True)
        )

    async def list_all(self, *, include_deleted: bool = False) -> Sequence[Integration]:
        statement = select(Integration).order_by(Integration.integration_id)
        if not include_deleted:
            statement = statement.where(Integration.status == "active")
        return (await self.session.scalars(statement)).all()

    async def insert_if_new(self, values: dict[str, Any]) -> bool:
        """Insert the row unless the id exists (a concurrent insert wins); True if inserted."""
        statement = (
            _insert_for(self.session, Integration.__table__)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["integration_id"])
            .returning(Integration.__table__.c.integration_id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none() is not None

    async def known_channel_provider_ids(self, *, account_id: str | None = None) -> list[str]:
        """Channel provider ids of active integrations and enabled channels (AXP subscriptions)."""
        from_integrations = select(Integration.channel_provider_id).where(
            Integration.status == "active", Integration.channel_provider_id.is_not(None)
        )
        from_channels = select(Channel.axp_channel_provider_id).where(Channel.enabled.is_(True))
        if account_id is not None:
            from_integrations = from_integrations.where(
                (Integration.account_id.is_(None)) | (Integration.account_id == account_id)
            )
            from_channels = from_channels.where(Channel.axp_account_id == account_id)
        found = set((await self.session.scalars(from_integrations)).all())
        found |= set((await self.session.scalars(from_channels)).all())
        return sorted(value for value in found if value)


class ConversationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, conversation_id: int) -> Conversation | None:
        return await self.session.get(Conversation, conversation_id)

    async def find_by_provider_dialog_id(self, provider_dialog_id: str) -> Conversation | None:
        return await self.session.scalar(
            select(Conversation).where(Conversation.provider_dialog_id == provider_dialog_id)
        )

    async def record_send(
        self,
        provider_dialog_id: str,
        *,
        engagement_id: str | None,
        dialog_id: str | None,
        at: datetime,
    ) -> None:
        """After a send: the ids AXP answered with, and activity at `at` (never backwards).

        One UPDATE by key instead of load, change and flush: the delivery handler runs it for
        every message, and ORM round trips were most of a delivery's CPU.
        """
        table = Conversation.__table__.c
        values: dict[str, Any] = {
            "last_activity_at": case(
                (or_(table.last_activity_at.is_(None), table.last_activity_at < at), at),
                else_=table.last_activity_at,
            )
        }
        if engagement_id:
            values["axp_engagement_id"] = engagement_id
        if dialog_id:
            values["axp_dialog_id"] = dialog_id
        await self.session.execute(
            update(Conversation)
            .where(Conversation.provider_dialog_id == provider_dialog_id)
            .values(values)
            .execution_options(synchronize_session=False)
        )

    async def find_latest(self, channel_id: int, customer_address: str) -> Conversation | None:
        """The highest generation for this customer on this channel, open or closed."""
        return await self.session.scalar(
            select(Conversation)
            .where(
                Conversation.channel_id == channel_id,
                Conversation.customer_address == customer_address,
            )
            .order_by(Conversation.generation.desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )

    async def find_open(self, channel_id: int, customer_address: str) -> Conversation | None:
        return await self.session.scalar(
            select(Conversation)
            .where(
                Conversation.channel_id == channel_id,
                Conversation.customer_address == customer_address,
                Conversation.state == "open",
            )
            .order_by(Conversation.generation.desc())
            .limit(1)
        )

    async def find_by_generation(
        self, channel_id: int, customer_address: str, generation: int
    ) -> Conversation | None:
        return await self.session.scalar(
            select(Conversation)
            .where(
                Conversation.channel_id == channel_id,
                Conversation.customer_address == customer_address,
                Conversation.generation == generation,
            )
            .execution_options(populate_existing=True)
        )

    async def insert_if_absent(self, values: dict[str, Any]) -> int | None:
        """Insert a conversation; None when a concurrent writer already holds its keys.

        No conflict target: either unique key (customer generation or providerDialogId)
        means the other writer won.
        """
        statement = (
            _insert_for(self.session, Conversation.__table__)
            .values(**values)
            .on_conflict_do_nothing()
            .returning(Conversation.__table__.c.id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()


class MessageLinkRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        *,
        direction: str,
        conversation_id: int | None = None,
        ack_id: str | None = None,
        nexus_message_id: str | None = None,
        axp_message_id: str | None = None,
        delivery_id: int | None = None,
        status: str = "pending",
    ) -> MessageLink:
        link = MessageLink(
            direction=direction,
            conversation_id=conversation_id,
            ack_id=ack_id,
            nexus_message_id=nexus_message_id,
            axp_message_id=axp_message_id,
            delivery_id=delivery_id,
            status=status,
        )
        self.session.add(link)
        await self.session.flush()
        return link

    async def _first(self, *conditions: Any) -> MessageLink | None:
        return await self.session.scalar(
            select(MessageLink).where(*conditions).order_by(MessageLink.id.desc()).limit(1)
        )

    async def find_by_ack_id(self, ack_id: str) -> MessageLink | None:
        return await self._first(MessageLink.ack_id == ack_id)

    async def find_by_nexus_message_id(
        self, nexus_message_id: str, *, direction: str | None = None
    ) -> MessageLink | None:
        conditions = [MessageLink.nexus_message_id == nexus_message_id]
        if direction is not None:
            conditions.append(MessageLink.direction == direction)
        return await self._first(*conditions)

    async def find_by_axp_message_id(self, axp_message_id: str) -> MessageLink | None:
        return await self._first(MessageLink.axp_message_id == axp_message_id)

    async def find_by_delivery_id(self, delivery_id: int) -> MessageLink | None:
        return await self._first(MessageLink.delivery_id == delivery_id)

    async def mark_sent(
        self, delivery_id: int, *, axp_message_id: str | None, at: datetime | None = None
    ) -> None:
        """The delivery's link: AXP's message id, and status `sent` unless it is already past.

        One UPDATE (the status moves forward only, as in `update_status`).
        """
        below_sent = [status for status, rank in _LINK_RANK.items() if rank < _LINK_RANK["sent"]]
        is_behind = MessageLink.status.in_(below_sent)
        await self.session.execute(
            update(MessageLink)
            .where(MessageLink.delivery_id == delivery_id)
            .values(
                axp_message_id=axp_message_id,
                status=case((is_behind, "sent"), else_=MessageLink.status),
                status_detail=case((is_behind, None), else_=MessageLink.status_detail),
                status_updated_at=case(
                    (is_behind, at or utcnow()), else_=MessageLink.status_updated_at
                ),
            )
            .execution_options(synchronize_session=False)
        )

    async def update_status(
        self,
        link: MessageLink,
        status: str,
        *,
        detail: str | None = None,
        at: datetime | None = None,
    ) -> bool:
        """Move the link's status forward; a stale or repeated status changes nothing (False)."""
        if status not in _LINK_RANK:
            raise ValueError(f"unknown message status {status!r}; expected one of {LINK_STATUSES}")
        if _LINK_RANK[status] <= _LINK_RANK.get(link.status, 0):
            return False
        link.status = status
        link.status_detail = detail
        link.status_updated_at = at or utcnow()
        await self.session.flush()
        return True
