"""AXP notification callbacks -> Nexus: agent messages, receipts, typing, conversation state.

Loop guard: a MESSAGES event whose sender is the CUSTOMER is the echo of a message we sent into
AXP. It never goes back to Nexus; only its status (DELIVERED, READ, FAILED) becomes a receipt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.bridge import partitions
from channel_bridge.bridge.context import BridgeContext
from channel_bridge.bridge.nexus_to_axp import NEXUS_ID_PREFIX
from channel_bridge.db.models import Channel, Conversation
from channel_bridge.mappings.conversations import ConversationService
from channel_bridge.mappings.repository import ChannelRepository, MessageLinkRepository
from channel_bridge.ops import metrics
from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.axp.schemas import (
    AxpCallbackEvent,
    EngagementCreatedEvent,
    EngagementErrorEvent,
    MessageEvent,
    ParticipantEvent,
    TypingEvent,
)
from channel_bridge.platforms.nexus.schemas import (
    MediaItem,
    build_inbound_message,
    build_receipt,
    build_typing,
)
from channel_bridge.relay.destinations import DeliveryContext, delivery_id_from_idempotency_key
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.service import mark_delivery_failed

log = get_logger(__name__)

MESSAGE_DESTINATION = "nexus.send_message"
RECEIPT_DESTINATION = "nexus.receipt"
TYPING_DESTINATION = "nexus.typing"
CONVERSATION_DESTINATION = "bridge.conversation_event"
DIRECTION = "axp_to_nexus"

CUSTOMER = "CUSTOMER"
# Statuses of a customer message that Nexus hears about, mapped to our link statuses.
RECEIPT_STATUSES = {"DELIVERED": "delivered", "READ": "read", "FAILED": "failed"}
# A disconnect of one of these ends the conversation; supervisors and system come and go.
CLOSING_PARTICIPANTS = frozenset({"CUSTOMER", "AGENT", "BOT"})


def _conversation_key(event: Any) -> str:
    return (
        getattr(event, "providerDialogId", None) or getattr(event, "engagementId", None) or "none"
    )


def _event_payload(event: AxpCallbackEvent) -> dict[str, Any]:
    return event.model_dump(mode="json", by_alias=True, exclude_none=True)


def make_axp_event_planner(
    *, typing_enabled: bool
) -> Callable[[AxpCallbackEvent], Sequence[DeliveryRequest]]:
    def plan(event: AxpCallbackEvent) -> Sequence[DeliveryRequest]:
        partition = partitions.axp_to_nexus(_conversation_key(event))
        payload = _event_payload(event)
        if isinstance(event, MessageEvent):
            if event.senderParticipantType == CUSTOMER:
                if event.status not in RECEIPT_STATUSES:
                    metrics.bridge_events.labels("axp.message", "echo").inc()
                    return []
                return [DeliveryRequest(RECEIPT_DESTINATION, payload, partition_key=partition)]
            return [DeliveryRequest(MESSAGE_DESTINATION, payload, partition_key=partition)]
        if isinstance(event, TypingEvent):
            if not typing_enabled or event.senderParticipantType == CUSTOMER:
                return []
            return [DeliveryRequest(TYPING_DESTINATION, payload, partition_key=partition)]
        if isinstance(event, ParticipantEvent | EngagementCreatedEvent | EngagementErrorEvent):
            return [DeliveryRequest(CONVERSATION_DESTINATION, payload, partition_key=partition)]
        return []

    return plan


async def _find_conversation(
    session: AsyncSession, event: MessageEvent | TypingEvent
) -> tuple[Conversation, Channel] | None:
    """By providerDialogId; else the CUSTOMER recipient's providerParticipantId on the channel."""
    conversations = ConversationService()
    channels = ChannelRepository(session)
    if event.providerDialogId:
        conversation = await conversations.find_by_provider_dialog_id(
            session, event.providerDialogId
        )
        if conversation is not None:
            channel = await channels.get(conversation.channel_id)
            return (conversation, channel) if channel is not None else None
    customer = event.customer_recipient() if isinstance(event, MessageEvent) else None
    if customer is None or not customer.providerParticipantId:
        return None
    channel = await _channel_for(session, event)
    if channel is None:
        return None
    conversation = await conversations.find_open_by_customer(
        session, channel.id, customer.providerParticipantId
    )
    return (conversation, channel) if conversation is not None else None


async def _channel_for(session: AsyncSession, event: MessageEvent | TypingEvent) -> Channel | None:
    """The event's channel: the echoed sourceAddress, else the one channel of its integration."""
    repository = ChannelRepository(session)
    source_address = (
        event.headers.sourceAddress if isinstance(event, MessageEvent) and event.headers else None
    )
    if source_address:
        channel = await repository.get_by_nexus_channel_id(source_address)
        if channel is not None and channel.axp_channel_provider_id == event.channelProviderId:
            return channel
    if not event.businessAccountName:
        return None
    candidates = [
        channel
        for channel in await repository.list_all(integration_id=event.businessAccountName)
        if channel.axp_channel_provider_id == event.channelProviderId
    ]
    return candidates[0] if len(candidates) == 1 else None


def _text_of(event: MessageEvent) -> str | None:
    body = event.body
    if body.elementText is not None and body.elementText.text:
        return body.elementText.text
    return event.fallbackText or body.payload


async def deliver_agent_message(bridge: BridgeContext, ctx: DeliveryContext) -> dict[str, Any]:
    event = MessageEvent.model_validate(ctx.payload)
    async with bridge.sessionmaker() as session:
        found = await _find_conversation(session, event)
        if found is None:
            metrics.bridge_events.labels("axp.message", "unroutable").inc()
            log.warning(
                "axp message for an unknown conversation is not relayed",
                provider_dialog_id=event.providerDialogId,
                axp_message_id=event.messageId,
            )
            return {"skipped": "unknown conversation"}
        conversation, channel = found
        if event.messageId and await MessageLinkRepository(session).find_by_axp_message_id(
            event.messageId
        ):
            # The same agent message again with another status: relayed once already.
            return {"skipped": "already relayed", "axp_message_id": event.messageId}
    if not channel.enabled:
        metrics.bridge_events.labels("axp.message", "channel_disabled").inc()
        return {"skipped": f"channel {channel.nexus_channel_id} disabled"}

    api_secret = bridge.nexus_api_secret(channel)
    media: list[MediaItem] = []
    for attachment in event.attachments or ():
        content, content_type, filename = await bridge.axp.media.download(attachment.url)
        uploaded = await bridge.nexus.upload_media(
            channel.nexus_channel_id,
            api_secret,
            content,
            filename or attachment.name,
            content_type or attachment.contentType,
        )
        media.append(
            MediaItem(
                url=uploaded.url,
                content_type=uploaded.mimetype or attachment.contentType,
                filename=uploaded.filename or attachment.name,
            )
        )
    # Stable per AXP message, so a retried send carries the same id.
    nexus_message_id = f"{NEXUS_ID_PREFIX}{event.messageId or ctx.idempotency_key}"
    message = build_inbound_message(
        bridge.nexus_fields,
        message_id=nexus_message_id,
        channel_id=channel.nexus_channel_id,
        from_address=conversation.customer_address,
        to_address=channel.nexus_channel_id,
        text=_text_of(event),
        media=media,
        timestamp=event.eventDate,
    )
    answer = await bridge.nexus.send_inbound_message(channel.nexus_channel_id, api_secret, message)
    remote_id = (answer.get("messageId") or answer.get("id")) if isinstance(answer, dict) else None

    async with bridge.sessionmaker() as session, session.begin():
        links = MessageLinkRepository(session)
        link = await links.create(
            direction=DIRECTION,
            conversation_id=conversation.id,
            axp_message_id=event.messageId,
            nexus_message_id=str(remote_id or nexus_message_id),
            delivery_id=ctx.delivery_id,
        )
        await links.update_status(link, "sent")
        fresh = await ConversationService().find_by_provider_dialog_id(
            session, conversation.provider_dialog_id
        )
        if fresh is not None:
            await ConversationService().record_axp_ids(
                session, fresh, engagement_id=event.engagementId, dialog_id=event.dialogId
            )
            await ConversationService().touch(session, fresh)
    metrics.bridge_events.labels("axp.message", "relayed").inc()
    return {"nexus_message_id": str(remote_id or nexus_message_id), "attachments": len(media)}


async def deliver_receipt(bridge: BridgeContext, ctx: DeliveryContext) -> dict[str, Any]:
    """A status change on a customer message we relayed from Nexus -> Nexus receipt."""
    event = MessageEvent.model_validate(ctx.payload)
    status = RECEIPT_STATUSES[event.status]
    async with bridge.sessionmaker() as session, session.begin():
        links = MessageLinkRepository(session)
        link = await links.find_by_axp_message_id(event.messageId) if event.messageId else None
        if link is None and event.providerMessageId:
            link = await links.find_by_nexus_message_id(
                event.providerMessageId, direction="nexus_to_axp"
            )
            # A Nexus message without an id was sent with our ack id as providerMessageId, and
            # the status can come before AXP's message id is on the link (race or lost answer).
            if link is None:
                link = await links.find_by_ack_id(event.providerMessageId)
        if link is None or link.direction != "nexus_to_axp" or not link.ack_id:
            metrics.bridge_events.labels("axp.status", "unroutable").inc()
            return {"skipped": "no relayed message for this status"}
        if link.axp_message_id is None and event.messageId:
            link.axp_message_id = event.messageId
        if not await links.update_status(link, status, detail=event.status):
            return {"skipped": f"status {status} not newer than {link.status}"}
        ack_id = link.ack_id
        channel = await _channel_of_link(session, link.conversation_id)
    if channel is None:
        return {"skipped": "conversation gone"}
    receipt = build_receipt(bridge.nexus_fields, message_id=ack_id, status=status)
    await bridge.nexus.send_receipt(
        channel.nexus_channel_id, bridge.nexus_api_secret(channel), receipt
    )
    metrics.bridge_events.labels("axp.status", status).inc()
    return {"receipt_for": ack_id, "status": status}


async def _channel_of_link(session: AsyncSession, conversation_id: int | None) -> Channel | None:
    if conversation_id is None:
        return None
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    return await ChannelRepository(session).get(conversation.channel_id)


async def deliver_typing(bridge: BridgeContext, ctx: DeliveryContext) -> dict[str, Any] | None:
    event = TypingEvent.model_validate(ctx.payload)
    async with bridge.sessionmaker() as session:
        found = await _find_conversation(session, event)
    if found is None:
        return {"skipped": "unknown conversation"}
    conversation, channel = found
    indicator = build_typing(
        bridge.nexus_fields,
        channel_id=channel.nexus_channel_id,
        from_address=conversation.customer_address,
    )
    await bridge.nexus.send_typing(
        channel.nexus_channel_id, bridge.nexus_api_secret(channel), indicator
    )
    return {"typing": conversation.provider_dialog_id}


async def deliver_conversation_event(bridge: BridgeContext, ctx: DeliveryContext) -> dict[str, Any]:
    """ENGAGEMENT_CREATED, PARTICIPANT_DISCONNECTED and ENGAGEMENT_ERROR update our state."""
    event_type = ctx.payload.get("eventType")
    conversations = ConversationService()
    async with bridge.sessionmaker() as session, session.begin():
        dialog_id = ctx.payload.get("providerDialogId")
        conversation = (
            await conversations.find_by_provider_dialog_id(session, dialog_id)
            if dialog_id
            else None
        )
        if event_type == "ENGAGEMENT_CREATED":
            event = EngagementCreatedEvent.model_validate(ctx.payload)
            if conversation is None:
                return {"skipped": "unknown conversation"}
            await conversations.record_axp_ids(
                session, conversation, engagement_id=event.engagementId, dialog_id=event.dialogId
            )
            return {"engagement_id": event.engagementId}
        if event_type == "PARTICIPANT_DISCONNECTED":
            participant = ParticipantEvent.model_validate(ctx.payload)
            if conversation is None:
                return {"skipped": "unknown conversation"}
            if (participant.participantType or "").upper() not in CLOSING_PARTICIPANTS:
                return {"skipped": f"{participant.participantType} left; conversation stays open"}
            closed = await conversations.close(
                session, conversation, reason=f"{participant.participantType} disconnected in AXP"
            )
            return {"closed": closed, "provider_dialog_id": conversation.provider_dialog_id}
        if event_type == "ENGAGEMENT_ERROR":
            return await _engagement_error(
                session, EngagementErrorEvent.model_validate(ctx.payload)
            )
        return {"skipped": f"{event_type} needs no action"}


async def _engagement_error(session: AsyncSession, event: EngagementErrorEvent) -> dict[str, Any]:
    """Find the delivery that caused the error (correlationId = our idempotency key) and fail it."""
    reason = f"AXP ENGAGEMENT_ERROR: {event.title}" + (f": {event.detail}" if event.detail else "")
    delivery_id = delivery_id_from_idempotency_key(event.correlationId)
    links = MessageLinkRepository(session)
    if delivery_id is None:
        metrics.engagement_errors.labels("no").inc()
        log.warning(
            "axp engagement error without a delivery",
            reason=reason,
            provider_dialog_id=event.providerDialogId,
        )
        return {"skipped": "no delivery matches the correlationId", "reason": reason}
    await mark_delivery_failed(session, delivery_id, reason)
    link = await links.find_by_delivery_id(delivery_id)
    if link is not None:
        await links.update_status(link, "failed", detail=reason)
    metrics.engagement_errors.labels("yes").inc()
    log.warning("axp engagement error", delivery_id=delivery_id, reason=reason)
    return {"failed_delivery": delivery_id, "reason": reason}
