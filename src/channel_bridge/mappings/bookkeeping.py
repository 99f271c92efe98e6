"""The mappings' writes that commit with a delivery's outcome (relay `BatchWriter`s).

A delivery handler returns these instead of opening a transaction: the relay worker applies
each writer once per outcome batch, to the rows of the deliveries whose lease it still held.
The names order them inside that transaction: conversations before message links, as in the
accept transaction, so two transactions never lock the same rows in opposite orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.base import utcnow
from channel_bridge.mappings.repository import ConversationRepository, MessageLinkRepository
from channel_bridge.relay.destinations import Write


class ConversationActivity:
    """Rows `{conversation_id, engagement_id, dialog_id, at}`: AXP's ids and last activity."""

    name = "conversations.activity"

    async def write(self, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
        await ConversationRepository(session).record_activity(rows)


class LinkSent:
    """Rows `{delivery_id, axp_message_id?, nexus_message_id?, at}`: a message went out."""

    name = "message_links.sent"

    async def write(self, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
        await MessageLinkRepository(session).mark_sent_many(rows)


CONVERSATION_ACTIVITY = ConversationActivity()
LINK_SENT = LinkSent()


def agent_message_relayed(
    *,
    delivery_id: int,
    conversation_id: int,
    engagement_id: str | None,
    dialog_id: str | None,
    remote_message_id: str,
) -> tuple[Write, Write]:
    """The writes of an AXP agent message delivered to the Genesys side: the conversation's
    activity, and the link's id over there."""
    now = utcnow()
    return (
        Write(
            CONVERSATION_ACTIVITY,
            {
                "conversation_id": conversation_id,
                "engagement_id": engagement_id,
                "dialog_id": dialog_id,
                "at": now,
            },
        ),
        Write(
            LINK_SENT,
            {"delivery_id": delivery_id, "nexus_message_id": remote_message_id, "at": now},
        ),
    )
