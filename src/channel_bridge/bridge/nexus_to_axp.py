"""Nexus webhook message -> AXP Custom Messaging "send async message".

The webhook route stores the message with its deliveries in one transaction. In that same
transaction `OpenConversations` opens the customer's conversation (so the delivery carries
its `providerDialogId`) and creates the message link (so an AXP status arriving before our
own bookkeeping still finds the message). The relay worker then calls `deliver_message` after
the acknowledgement, with retries: it builds the AXP request from the payload and the cached
channel, and returns the conversation's new AXP ids and the link's AXP message id as writes
that commit with the delivery's outcome.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.bridge import partitions
from channel_bridge.bridge.context import BridgeContext
from channel_bridge.bridge.destinations import BridgeDestination
from channel_bridge.bridge.payloads import AxpSendPayload, AxpTypingPayload, NexusReceiptRecord
from channel_bridge.db.base import utcnow
from channel_bridge.db.models import CHANNEL_BACKEND_GENESYS_CLOUD, Channel, LinkDirection
from channel_bridge.mappings.bookkeeping import CONVERSATION_ACTIVITY, LINK_SENT
from channel_bridge.mappings.conversations import ConversationKey, ConversationService
from channel_bridge.mappings.repository import (
    MessageLinkRepository,
    latest_conversations_and_sent_messages,
)
from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.axp.destinations import AxpDestination
from channel_bridge.platforms.axp.schemas import (
    AttachmentContentIdMap,
    BodyElement,
    ElementText,
    MessageHeaders,
    SendAsyncMessage,
)
from channel_bridge.platforms.nexus.schemas import MediaItem, NexusWebhookMessage
from channel_bridge.relay.destinations import Delivered, DeliveryContext, Write
from channel_bridge.relay.envelope import (
    DELIVERY_SEQUENCE,
    AcceptedEvent,
    DeliveryRequest,
    Plan,
    RowsNamingDeliveries,
)

log = get_logger(__name__)

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
# AXP's senderName allows 70 characters (custom-messaging spec v1.0.4).
SENDER_NAME_MAX = 70


def customer_address(message: NexusWebhookMessage) -> str | None:
    """The AXP customer is the party the Nexus message is addressed to (see docs/bridge.md)."""
    return message.to


class OpenConversations:
    """Accept step: the conversation and message link of each accepted Nexus message."""

    name = "bridge.nexus_to_axp"

    def __init__(self, conversations: ConversationService | None = None) -> None:
        self._conversations = conversations or ConversationService()

    async def before_deliveries(
        self, session: AsyncSession, events: Sequence[AcceptedEvent]
    ) -> None:
        # Both reads in one statement: the batch's customers' conversations (read for every
        # message, including a send dropped below: a row unused) and the messages sent before.
        read = await latest_conversations_and_sent_messages(
            session,
            {event.context.columns for event in events if event.deliveries},
            _sent_keys_wanted(events),
            direction=LinkDirection.NEXUS_TO_AXP,
        )
        _drop_sent_before(events, read.sent)
        sends: set[ConversationKey] = set()
        typing: set[ConversationKey] = set()
        for event in events:
            for request in event.deliveries:
                if isinstance(request.payload, AxpSendPayload):
                    sends.add(event.context)
                elif isinstance(request.payload, AxpTypingPayload):
                    typing.add(event.context)
        opened = (
            await self._conversations.open_many(session, sends, latest=read.latest) if sends else {}
        )
        if typing - opened.keys():
            # Typing never opens a conversation: it only reaches one that is already open.
            opened |= await self._conversations.find_open_many(
                session, typing - opened.keys(), latest=read.latest
            )
        for event in events:
            conversation = opened.get(event.context)
            event.deliveries = [
                _with_conversation(request, conversation) for request in event.deliveries
            ]

    def rows_naming_deliveries(
        self, events: Sequence[AcceptedEvent]
    ) -> Sequence[RowsNamingDeliveries]:
        """A message link per send, written in the delivery insert's statement."""
        now = utcnow()
        links = [
            {
                **MessageLinkRepository.pending_row(
                    LinkDirection.NEXUS_TO_AXP,
                    conversation_id=request.payload.conversation_id,
                    ack_id=request.payload.ack_id,
                    nexus_message_id=request.payload.nexus_message_id,
                    now=now,
                ),
                DELIVERY_SEQUENCE: sequence,
            }
            for event in events
            for request, sequence in zip(event.deliveries, event.delivery_sequences, strict=True)
            if isinstance(request.payload, AxpSendPayload)
        ]
        return [MessageLinkRepository.written_with_deliveries(links)]

    async def after_deliveries(
        self, session: AsyncSession, events: Sequence[AcceptedEvent]
    ) -> None:
        """Nothing: every link was written with its delivery."""


def _sent_keys_wanted(events: Sequence[AcceptedEvent]) -> set[tuple[int, str]]:
    """(channel id, Nexus message id) of each send in the batch, to check against the links."""
    return {
        (event.context.channel_id, request.payload.nexus_message_id)
        for event in events
        for request in event.deliveries
        if isinstance(request.payload, AxpSendPayload) and request.payload.nexus_message_id
    }


def _drop_sent_before(events: Sequence[AcceptedEvent], sent: set[tuple[int, str]]) -> None:
    """Drop the send of a Nexus message this channel already sent to AXP.

    The inbox refuses a replay while its tombstone lives; past that (or under another dedupe
    key) the message link still knows the message went out (`sent`, read with the batch's
    conversations).
    """
    if not sent:
        return
    for event in events:
        kept = [
            request
            for request in event.deliveries
            if not (
                isinstance(request.payload, AxpSendPayload)
                and (event.context.channel_id, request.payload.nexus_message_id) in sent
            )
        ]
        if len(kept) != len(event.deliveries):
            log.warning(
                "nexus message already sent to axp; not sent again",
                inbox_event_id=event.inbox_event_id,
            )
            event.deliveries = kept


def _with_conversation(request: DeliveryRequest, conversation: Any) -> DeliveryRequest:
    payload = request.payload
    if isinstance(payload, AxpSendPayload) and conversation is not None:
        return request.with_payload(
            payload.model_copy(
                update={
                    "conversation_id": conversation.id,
                    "provider_dialog_id": conversation.provider_dialog_id,
                }
            )
        )
    if isinstance(payload, AxpTypingPayload):
        return request.with_payload(
            payload.model_copy(
                update={
                    "resolved": True,
                    "provider_dialog_id": conversation.provider_dialog_id
                    if conversation is not None
                    else None,
                }
            )
        )
    return request


OPEN_CONVERSATIONS = OpenConversations()


def plan_nexus_message(
    channel: Channel, message: NexusWebhookMessage, ack_id: str, trace_id: str | None
) -> Plan:
    """The deliveries one accepted Nexus webhook message becomes."""
    if message.is_receipt:
        # AXP has no API for receipts on agent messages: the status is recorded on the link.
        assert message.receipt_for is not None
        return Plan(
            [
                DeliveryRequest(
                    BridgeDestination.NEXUS_RECEIPT,
                    NexusReceiptRecord(
                        nexus_channel_id=channel.nexus_channel_id,
                        receipt_for=message.receipt_for,
                        status=message.receipt_status,
                    ),
                )
            ]
        )
    customer = customer_address(message)
    if not customer:
        # Stored and acknowledged, never relayed blindly: there is no one to address in AXP.
        log.warning("nexus message without a recipient is not relayed", ack_id=ack_id)
        return Plan([])
    partition = partitions.nexus_to_axp(channel.nexus_channel_id, customer)
    key = ConversationKey(channel.id, channel.nexus_channel_id, customer)
    if message.typing is not None and not message.text and not message.media:
        if not message.typing:
            return Plan([])
        typing = AxpTypingPayload(
            nexus_channel_id=channel.nexus_channel_id,
            customer=customer,
            ack_id=ack_id,
            trace_id=trace_id,
        )
        return Plan(
            [DeliveryRequest(AxpDestination.TYPING, typing, partition_key=partition)],
            step=OPEN_CONVERSATIONS,
            step_context=key,
        )
    payload = AxpSendPayload(
        nexus_channel_id=channel.nexus_channel_id,
        customer=customer,
        ack_id=ack_id,
        trace_id=trace_id,
        nexus_message_id=message.message_id,
        business_address=message.from_,
        text=message.text,
        media=list(message.media),
        timestamp=message.timestamp,
    )
    return Plan(
        [DeliveryRequest(AxpDestination.SEND_MESSAGE, payload, partition_key=partition)],
        step=OPEN_CONVERSATIONS,
        step_context=key,
    )


def _element_type(content_type: str | None) -> str:
    """AXP body elementType matching the first attachment (image, video, audio, else file)."""
    major = (content_type or "").split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "file"


def _filename(item: MediaItem, index: int) -> str:
    if item.filename:
        return item.filename
    extension = mimetypes.guess_extension(item.content_type or "") or ""
    return f"attachment-{index + 1}{extension}"


async def deliver_message(bridge: BridgeContext, ctx: DeliveryContext[AxpSendPayload]) -> Delivered:
    payload = ctx.payload
    channel = await bridge.enabled_channel(payload.nexus_channel_id)
    if payload.provider_dialog_id is None or payload.conversation_id is None:
        payload = await _open_at_send(bridge, channel, payload, ctx.delivery_id)
    assert payload.provider_dialog_id is not None and payload.conversation_id is not None

    attachments: list[AttachmentContentIdMap] = []
    for index, item in enumerate(payload.media):
        content_type = item.content_type or "application/octet-stream"
        filename = _filename(item, index)
        fetch = (
            bridge.genesys_cloud_client().fetch_media
            if channel.backend == CHANNEL_BACKEND_GENESYS_CLOUD
            else bridge.nexus.fetch_media
        )
        async with await fetch(item.url) as spool:
            media_id = await bridge.axp.media.upload(spool, filename, content_type)
        attachments.append(AttachmentContentIdMap(attachmentId=media_id))

    text = payload.text
    element_type = _element_type(payload.media[0].content_type) if payload.media else "text"
    customer = payload.customer
    message = SendAsyncMessage(
        channelProviderId=channel.axp_channel_provider_id,
        channelId=channel.axp_channel_id,
        businessAccountName=channel.axp_integration_id,
        customerIdentifiers={channel.customer_identifier_key: [customer]},
        senderName=customer[:SENDER_NAME_MAX],
        providerSenderId=customer,
        providerDialogId=payload.provider_dialog_id,
        # The Nexus id when it has one, else the id we answered with: stable across retries.
        providerMessageId=payload.nexus_message_id or payload.ack_id,
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
    # Debug: at wire speed an info line per message was a measurable share of a delivery.
    log.debug(
        "relayed nexus message to axp",
        conversation_id=payload.conversation_id,
        axp_message_id=result.message_id,
        attachments=len(attachments),
    )
    now = utcnow()
    return Delivered(
        result={
            "axp_message_id": result.message_id,
            "engagement_id": result.engagement_id,
            "dialog_id": result.dialog_id,
            "provider_dialog_id": payload.provider_dialog_id,
        },
        writes=(
            Write(
                CONVERSATION_ACTIVITY,
                {
                    "conversation_id": payload.conversation_id,
                    "engagement_id": result.engagement_id,
                    "dialog_id": result.dialog_id,
                    "at": now,
                },
            ),
            Write(
                LINK_SENT,
                {"delivery_id": ctx.delivery_id, "axp_message_id": result.message_id, "at": now},
            ),
        ),
    )


async def _open_at_send(
    bridge: BridgeContext, channel: Channel, payload: AxpSendPayload, delivery_id: int
) -> AxpSendPayload:
    """A row queued before conversations were opened at accept: open it (and its link) now."""
    key = ConversationKey(channel.id, channel.nexus_channel_id, payload.customer)
    async with bridge.sessionmaker() as session, session.begin():
        conversation = (await ConversationService().open_many(session, [key]))[key]
        links = MessageLinkRepository(session)
        if await links.find_by_delivery_id(delivery_id) is None:
            await links.create(
                direction=LinkDirection.NEXUS_TO_AXP,
                conversation_id=conversation.id,
                ack_id=payload.ack_id,
                nexus_message_id=payload.nexus_message_id,
                delivery_id=delivery_id,
            )
    return payload.model_copy(
        update={
            "conversation_id": conversation.id,
            "provider_dialog_id": conversation.provider_dialog_id,
        }
    )


async def deliver_typing(
    bridge: BridgeContext, ctx: DeliveryContext[AxpTypingPayload]
) -> dict[str, Any] | None:
    """A Nexus typing indicator -> AXP `:typing` on the customer's open conversation."""
    payload = ctx.payload
    channel = await bridge.enabled_channel(payload.nexus_channel_id)
    provider_dialog_id = payload.provider_dialog_id
    if not payload.resolved:
        key = ConversationKey(channel.id, channel.nexus_channel_id, payload.customer)
        async with bridge.sessionmaker() as session:
            found = await ConversationService().find_open_many(session, [key])
        provider_dialog_id = found[key].provider_dialog_id if key in found else None
    if provider_dialog_id is None:
        return {"skipped": "no open conversation"}
    await bridge.axp.messaging.typing(
        provider_dialog_id,
        channel_provider_id=channel.axp_channel_provider_id,
        business_account_name=channel.axp_integration_id,
        correlation_id=ctx.idempotency_key,
    )
    return {"provider_dialog_id": provider_dialog_id}


async def record_nexus_receipt(
    bridge: BridgeContext, ctx: DeliveryContext[NexusReceiptRecord]
) -> dict[str, Any]:
    """A Nexus receipt for a message we relayed from AXP: recorded on its message link."""
    payload = ctx.payload
    status = NEXUS_RECEIPT_STATUSES.get(str(payload.status or "").lower())
    if status is None:
        return {"skipped": f"unknown receipt status {payload.status!r}"}
    async with bridge.sessionmaker() as session, session.begin():
        links = MessageLinkRepository(session)
        receipt_for = payload.receipt_for
        link = await links.find_by_nexus_message_id(
            receipt_for, direction=LinkDirection.AXP_TO_NEXUS
        )
        if link is None and receipt_for.startswith(NEXUS_ID_PREFIX):
            # Nexus may name the message by the id we gave it (axp-<AXP messageId>).
            link = await links.find_by_axp_message_id(receipt_for.removeprefix(NEXUS_ID_PREFIX))
        if link is None:
            return {"skipped": "no message we relayed has this id"}
        changed = await links.update_status(link, status, detail=f"Nexus receipt {payload.status}")
    return {"link": link.id, "status": status, "changed": changed}
