"""Conversations (channel + customer <-> AXP providerDialogId) and the links between message ids.

providerDialogId format (deterministic, so a restart or a second replica derives the same id):

    <customer_address>_<nexus_channel_id>_<generation>     e.g. +15551230000_+15559870000_1

It follows the official AXP sample's "senderId_receiverId_subChannelId" shape, with the
generation in the last slot: a closed conversation is never reopened, the next message starts
generation + 1 and so a new AXP dialog. A part that is not made only of `A-Z a-z 0-9 + . @ -`
(so `_` stays an unambiguous separator and the id is safe in AXP's
`/provider-dialogs/{providerDialogId}:typing` path) is written as `~` + the first 32 hex digits
of its SHA-256. AXP allows 3-256 characters (custom-messaging spec v1.0.4); the column holds
255, so an id that would be longer also has its customer part hashed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Channel, Conversation, MessageLink
from channel_bridge.mappings.repository import ConversationRepository, MessageLinkRepository
from channel_bridge.ops.logging import get_logger

log = get_logger(__name__)

PROVIDER_DIALOG_ID_MAX = 255
_VERBATIM_PART = re.compile(r"^[A-Za-z0-9+.@-]+$")
# A lost race for a new generation is retried this often before giving up.
_OPEN_ATTEMPTS = 5


def _part(value: str) -> str:
    if _VERBATIM_PART.fullmatch(value):
        return value
    return "~" + hashlib.sha256(value.encode()).hexdigest()[:32]


def dialog_id_part(value: str) -> str:
    """How a channel id or customer address is written inside a providerDialogId."""
    return _part(value)


def provider_dialog_id(nexus_channel_id: str, customer_address: str, generation: int) -> str:
    """The AXP providerDialogId of one conversation generation (see the module docstring)."""
    candidate = f"{_part(customer_address)}_{_part(nexus_channel_id)}_{generation}"
    if len(candidate) <= PROVIDER_DIALOG_ID_MAX:
        return candidate
    hashed = "~" + hashlib.sha256(customer_address.encode()).hexdigest()[:32]
    return f"{hashed}_{_part(nexus_channel_id)}_{generation}"


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Who a conversation is with: a customer on one of our channels."""

    channel_id: int
    nexus_channel_id: str
    customer_address: str

    @property
    def columns(self) -> tuple[int, str]:
        return (self.channel_id, self.customer_address)


@dataclass(frozen=True, slots=True)
class OpenConversation:
    """The ids a delivery needs of its conversation."""

    id: int
    provider_dialog_id: str


class ConversationService:
    """Open, find, touch and close conversations; each call works in the caller's transaction."""

    def __init__(self, *, now: Callable[[], datetime] = utcnow) -> None:
        self.now = now

    async def get_or_open(
        self, session: AsyncSession, channel: Channel, customer_address: str
    ) -> Conversation:
        """The customer's open conversation on this channel, or a new generation of it.

        Two first messages at once both try to insert the same generation; the unique
        constraint lets one win and the other reads the winner's row.
        """
        repo = ConversationRepository(session)
        for _ in range(_OPEN_ATTEMPTS):
            latest = await repo.find_latest(channel.id, customer_address)
            if latest is not None and latest.state == "open":
                return latest
            generation = latest.generation + 1 if latest is not None else 1
            now = self.now()
            inserted = await repo.insert_if_absent(
                {
                    "channel_id": channel.id,
                    "customer_address": customer_address,
                    "generation": generation,
                    "provider_dialog_id": provider_dialog_id(
                        channel.nexus_channel_id, customer_address, generation
                    ),
                    "state": "open",
                    "last_activity_at": now,
                    "created_at": now,
                }
            )
            conversation = await repo.find_by_generation(channel.id, customer_address, generation)
            if conversation is not None and conversation.state == "open":
                if inserted is not None:
                    log.info(
                        "conversation opened",
                        conversation_id=conversation.id,
                        channel=channel.nexus_channel_id,
                        generation=generation,
                    )
                return conversation
        raise RuntimeError(
            f"could not open a conversation on channel {channel.id} after {_OPEN_ATTEMPTS} attempts"
        )

    async def open_many(
        self,
        session: AsyncSession,
        keys: Collection[ConversationKey],
        *,
        latest: Mapping[tuple[int, str], Any] | None = None,
    ) -> dict[ConversationKey, OpenConversation]:
        """`get_or_open` for many customers at once: two statements for the whole batch, one
        if `latest` (`ConversationRepository.latest_for` of at least these keys) was read.

        Used in the accept transaction, so a message's deliveries carry their conversation.
        A concurrent writer that opens the same generation first wins the unique constraint;
        the losers read its row on the next round.
        """
        repo = ConversationRepository(session)
        found: dict[ConversationKey, OpenConversation] = {}
        pending = {key.columns: key for key in keys}
        for attempt in range(_OPEN_ATTEMPTS):
            if not pending:
                return found
            if attempt or latest is None:
                latest = await repo.latest_for(pending)
            new_rows = []
            now = self.now()
            for columns, key in pending.items():
                row = latest.get(columns)
                if row is not None and row.state == "open":
                    found[key] = OpenConversation(row.id, row.provider_dialog_id)
                    continue
                generation = row.generation + 1 if row is not None else 1
                new_rows.append(
                    {
                        "channel_id": key.channel_id,
                        "customer_address": key.customer_address,
                        "generation": generation,
                        "provider_dialog_id": provider_dialog_id(
                            key.nexus_channel_id, key.customer_address, generation
                        ),
                        "state": "open",
                        "last_activity_at": now,
                        "created_at": now,
                    }
                )
            pending = {columns: key for columns, key in pending.items() if key not in found}
            for row in await repo.insert_many_if_absent(new_rows) if new_rows else ():
                key = pending.pop((row.channel_id, row.customer_address))
                found[key] = OpenConversation(row.id, row.provider_dialog_id)
                log.info(
                    "conversation opened",
                    conversation_id=row.id,
                    channel=key.nexus_channel_id,
                    generation=row.generation,
                )
        if pending:
            raise RuntimeError(
                f"could not open {len(pending)} conversation(s) after {_OPEN_ATTEMPTS} attempts"
            )
        return found

    async def find_open_many(
        self,
        session: AsyncSession,
        keys: Collection[ConversationKey],
        *,
        latest: Mapping[tuple[int, str], Any] | None = None,
    ) -> dict[ConversationKey, OpenConversation]:
        """The open conversation of each customer that has one (none is opened); `latest` as
        for `open_many`."""
        if latest is None:
            latest = await ConversationRepository(session).latest_for([key.columns for key in keys])
        found = {}
        for key in keys:
            row = latest.get(key.columns)
            if row is not None and row.state == "open":
                found[key] = OpenConversation(row.id, row.provider_dialog_id)
        return found

    async def find_many_with_channel(
        self, session: AsyncSession, provider_dialog_ids: Collection[str]
    ) -> list[tuple[Conversation, str]]:
        """Conversations by providerDialogId, each with its channel's Nexus channel id."""
        return await ConversationRepository(session).find_many_with_channel(provider_dialog_ids)

    async def search(
        self,
        session: AsyncSession,
        *,
        customer_address: str | None = None,
        nexus_channel_id: str | None = None,
        provider_dialog_id: str | None = None,
        limit: int = 50,
    ) -> list[tuple[Conversation, str]]:
        """Conversations matching every given value, most recently active first."""
        return await ConversationRepository(session).search(
            customer_address=customer_address,
            nexus_channel_id=nexus_channel_id,
            provider_dialog_id=provider_dialog_id,
            limit=limit,
        )

    async def get(self, session: AsyncSession, conversation_id: int) -> Conversation | None:
        return await ConversationRepository(session).get(conversation_id)

    async def messages(self, session: AsyncSession, conversation_id: int) -> list[MessageLink]:
        """The conversation's message links both ways, oldest first."""
        return await MessageLinkRepository(session).list_for_conversation(conversation_id)

    async def find_by_provider_dialog_id(
        self, session: AsyncSession, provider_dialog_id: str
    ) -> Conversation | None:
        return await ConversationRepository(session).find_by_provider_dialog_id(provider_dialog_id)

    async def find_open_by_customer(
        self, session: AsyncSession, channel_id: int, customer_address: str
    ) -> Conversation | None:
        """The customer's open conversation on this channel (fallback for AXP events)."""
        return await ConversationRepository(session).find_open(channel_id, customer_address)

    async def record_axp_ids(
        self,
        session: AsyncSession,
        conversation: Conversation,
        *,
        engagement_id: str | None,
        dialog_id: str | None,
    ) -> bool:
        """Remember the engagement and dialog AXP assigned; True if anything changed."""
        changed = False
        if engagement_id and conversation.axp_engagement_id != engagement_id:
            if conversation.axp_engagement_id:
                log.info(
                    "conversation engagement changed",
                    conversation_id=conversation.id,
                    previous=conversation.axp_engagement_id,
                    engagement_id=engagement_id,
                )
            conversation.axp_engagement_id = engagement_id
            changed = True
        if dialog_id and conversation.axp_dialog_id != dialog_id:
            conversation.axp_dialog_id = dialog_id
            changed = True
        if changed:
            await session.flush()
        return changed

    async def touch(
        self, session: AsyncSession, conversation: Conversation, *, at: datetime | None = None
    ) -> None:
        """Record activity now (or at `at`, never moving backwards)."""
        moment = at or self.now()
        if conversation.last_activity_at is None or moment > conversation.last_activity_at:
            conversation.last_activity_at = moment
            await session.flush()

    async def close(
        self, session: AsyncSession, conversation: Conversation, *, reason: str
    ) -> bool:
        """Close it for good (the next message opens generation + 1); False if already closed."""
        if conversation.state == "closed":
            return False
        now = self.now()
        conversation.state = "closed"
        conversation.closed_at = now
        conversation.closed_reason = reason
        conversation.last_activity_at = max(conversation.last_activity_at, now)
        await session.flush()
        log.info("conversation closed", conversation_id=conversation.id, reason=reason)
        return True
