"""Nexus webhook message -> AXP Custom Messaging "send async message".

The webhook route stores the message and these deliveries in one transaction; the relay worker
then calls `deliver_message` (or `deliver_typing`) after the acknowledgement, with retries.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.bridge import partitions
from channel_bridge.bridge.context import BridgeContext
from channel_bridge.db.models import Channel
from channel_bridge.mappings.conversations import ConversationService
from channel_bridge.mappings.repository import ChannelRepository, MessageLinkRepository
from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.axp.schemas import (
    AttachmentContentIdMap,
    BodyElement,
    ElementText,
    MessageHeaders,
    SendAsyncMessage,
)
from channel_bridge.platforms.nexus.schemas import OutgoingMessage
from channel_bridge.relay.destinations import DeliveryContext
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.errors import PermanentError

log = get_logger(__name__)

SEND_DESTINATION = "axp.send_message"
TYPING_DESTINATION = "axp.typing"
RECEIPT_DESTINATION = "bridge.nexus_receipt"
# The id we give AXP agent messages in Nexus (bridge/axp_to_nexus.py).
NEXUS_ID_PREFIX = "axp-"
# Nexus receipt statuses we understand (case-insensitive), as message link statuses.
NEXUS_RECEIPT_STATUSES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",
}
DIRECTION = "nexus_to_axp"
# AXP's senderName allows 70 characters (custom-messaging spec v1.0.4).
SENDER_NAME_MAX = 70


def customer_address(message: OutgoingMessage) -> str | None:
    """The AXP customer is the party the Nexus message is addressed to (see docs/bridge.md)."""
    return message.to


def plan_nexus_message(
    channel: Channel, message: OutgoingMessage, ack_id: str, trace_id: str | None
) -> Sequence[DeliveryRequest]:
    """The deliveries one accepted Nexus webhook message becomes."""
    if message.is_receipt:
        # AXP has no API for receipts on agent messages: the status is recorded on the link.
        return [
            DeliveryRequest(
                RECEIPT_DESTINATION,
                {
                    "nexus_channel_id": channel.nexus_channel_id,
                    "receipt_for": message.receipt_for,
                    "status": message.receipt_status,
                },
            )
        ]
    customer = customer_address(message)
    if not customer:
        # Stored and acknowledged, never relayed blindly: there is no one to address in AXP.
        log.warning("nexus message without a recipient is not relayed", ack_id=ack_id)
        return []
    partition = partitions.nexus_to_axp(channel.nexus_channel_id, customer)
    base = {
        "nexus_channel_id": channel.nexus_channel_id,
        "customer": customer,
        "ack_id": ack_id,
        "trace_id": trace_id,
    }
    if message.typing is not None and not message.text and not message.media:
        if not message.typing:
            return []
        return [DeliveryRequest(TYPING_DESTINATION, base, partition_key=partition)]
    payload = {
        **base,
        "nexus_message_id": message.message_id,
        "business_address": message.from_,
        "text": message.text,
        "media": [item.model_dump() for item in message.media],
        "timestamp": message.timestamp,
    }
    return [DeliveryRequest(SEND_DESTINATION, payload, partition_key=partition)]


def _element_type(content_type: str | None) -> str:
    """AXP body elementType matching the first attachment (image, video, audio, else file)."""
    major = (content_type or "").split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "file"


def _filename(item: dict[str, Any], index: int) -> str:
    if item.get("filename"):
        return str(item["filename"])
    extension = mimetypes.guess_extension(item.get("content_type") or "") or ""
    return f"attachment-{index + 1}{extension}"


async def _load_channel(bridge: BridgeContext, nexus_channel_id: str) -> Channel:
    async with bridge.sessionmaker() as session:
        return await _enabled_channel(session, nexus_channel_id)


async def _enabled_channel(session: AsyncSession, nexus_channel_id: str) -> Channel:
    """Re-read at delivery: a channel disabled after the accept stops its messages here."""
    channel = await ChannelRepository(session).get_by_nexus_channel_id(nexus_channel_id)
    if channel is None or not channel.enabled:
        reason = (
            "removed" if channel is None else f"disabled ({channel.disabled_reason or 'no reason'})"
        )
        raise PermanentError(f"channel {nexus_channel_id} is {reason}")
    return channel


async def deliver_message(bridge: BridgeContext, ctx: DeliveryContext) -> dict[str, Any]:
    payload = ctx.payload
    conversations = ConversationService()
    async with bridge.sessionmaker() as session, session.begin():
        channel = await _enabled_channel(session, payload["nexus_channel_id"])
        conversation = await conversations.get_or_open(session, channel, payload["customer"])
        links = MessageLinkRepository(session)
        if await links.find_by_delivery_id(ctx.delivery_id) is None:
            await links.create(
                direction=DIRECTION,
                conversation_id=conversation.id,
                ack_id=payload["ack_id"],
                nexus_message_id=payload.get("nexus_message_id"),
                delivery_id=ctx.delivery_id,
            )
        provider_dialog_id = conversation.provider_dialog_id
        conversation_id = conversation.id

    attachments: list[AttachmentContentIdMap] = []
    media = payload.get("media") or []
    for index, item in enumerate(media):
        content = await bridge.nexus.fetch_media(item["url"])
        content_type = item.get("content_type") or "application/octet-stream"
        media_id = await bridge.axp.media.upload(content, _filename(item, index), content_type)
        attachments.append(AttachmentContentIdMap(attachmentId=media_id))

    text = payload.get("text")
    element_type = _element_type(media[0].get("content_type")) if media else "text"
    customer = payload["customer"]
    message = SendAsyncMessage(
        channelProviderId=channel.axp_channel_provider_id,
        channelId=channel.axp_channel_id,
        businessAccountName=channel.axp_integration_id,
        customerIdentifiers={channel.customer_identifier_key: [customer]},
        senderName=customer[:SENDER_NAME_MAX],
        providerSenderId=customer,
        providerDialogId=provider_dialog_id,
        # The Nexus id when it has one, else the id we answered with: stable across retries.
        providerMessageId=payload.get("nexus_message_id") or payload["ack_id"],
        body=BodyElement(
            elementType=element_type,
            elementText=ElementText(text=text, textFormat="PLAINTEXT") if text else None,
        ),
        # AXP echoes the headers on its callbacks: sourceAddress finds the channel again.
        headers=MessageHeaders(
            sourceType=bridge.settings.axp_source_type, sourceAddress=channel.nexus_channel_id
        ),
        attachments=attachments or None,
        correlationId=ctx.idempotency_key,
    )
    result = await bridge.axp.messaging.send_message(message)

    async with bridge.sessionmaker() as session, session.begin():
        await conversations.record_send(
            session,
            provider_dialog_id,
            engagement_id=result.engagement_id,
            dialog_id=result.dialog_id,
        )
        await MessageLinkRepository(session).mark_sent(
            ctx.delivery_id, axp_message_id=result.message_id
        )
    log.info(
        "relayed nexus message to axp",
        conversation_id=conversation_id,
        axp_message_id=result.message_id,
        attachments=len(attachments),
    )
    return {
        "axp_message_id": result.message_id,
        "engagement_id": result.engagement_id,
        "dialog_id": result.dialog_id,
        "provider_dialog_id": provider_dialog_id,
    }


async def deliver_typing(bridge: BridgeContext, ctx: DeliveryContext) -> dict[str, Any] | None:
    """A Nexus typing indicator -> AXP `:typing` on the customer's open conversation."""
    payload = ctx.payload
    channel = await _load_channel(bridge, payload["nexus_channel_id"])
    async with bridge.sessionmaker() as session:
        conversation = await ConversationService().find_open_by_customer(
            session, channel.id, payload["customer"]
        )
    if conversation is None:
        return {"skipped": "no open conversation"}
    await bridge.axp.messaging.typing(
        conversation.provider_dialog_id,
        channel_provider_id=channel.axp_channel_provider_id,
        business_account_name=channel.axp_integration_id,
        correlation_id=ctx.idempotency_key,
    )
    return {"provider_dialog_id": conversation.provider_dialog_id}


async def record_nexus_receipt(bridge: BridgeContext, ctx: DeliveryContext) -> dict[str, Any]:
    """A Nexus receipt for a message we relayed from AXP: recorded on its message link."""
    payload = ctx.payload
    status = NEXUS_RECEIPT_STATUSES.get(str(payload.get("status", "")).lower())
    if status is None:
        return {"skipped": f"unknown receipt status {payload.get('status')!r}"}
    async with bridge.sessionmaker() as session, session.begin():
        links = MessageLinkRepository(session)
        receipt_for = str(payload["receipt_for"])
        link = await links.find_by_nexus_message_id(receipt_for, direction="axp_to_nexus")
        if link is None and receipt_for.startswith(NEXUS_ID_PREFIX):
            # Nexus may name the message by the id we gave it (axp-<AXP messageId>).
            link = await links.find_by_axp_message_id(receipt_for.removeprefix(NEXUS_ID_PREFIX))
        if link is None:
            return {"skipped": "no message we relayed has this id"}
        changed = await links.update_status(
            link, status, detail=f"Nexus receipt {payload['status']}"
        )
    return {"link": link.id, "status": status, "changed": changed}
