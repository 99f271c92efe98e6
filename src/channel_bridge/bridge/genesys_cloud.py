"""Genesys Cloud Open Messaging <-> AXP: the second Genesys backend, on the Nexus machinery.

Genesys -> AXP: an agent's message on the outbound webhook becomes the same AXP send as a
Nexus message (`nexus_to_axp`: its conversation is opened at accept, its attachments are
downloaded and put in the AXP media store at delivery); a typing event becomes AXP typing; a
receipt for a customer message we sent is recorded on its message link. Loop guard: anything
with `direction: "Inbound"` is a customer message, i.e. our own, and is never relayed back.

AXP -> Genesys: the AXP planner and accept step (`axp_to_nexus`) find the conversation as for
Nexus; for a genesys-cloud channel the delivery goes to this module's destinations, which
have their own circuit (so Genesys Cloud's rate limit and outages never hold up Nexus). An
agent message becomes `inbound/open/message` (its attachments as fresh signed AXP media
URLs, which Genesys fetches), an AXP status `inbound/open/receipt`
(Delivered, Failed), AXP typing `inbound/open/event`; a Genesys message whose AXP send goes
dead becomes a `Failed` receipt too (`report_dead_send`, the relay's dead-letter hook).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from channel_bridge.bridge import nexus_to_axp, partitions
from channel_bridge.bridge.context import BridgeContext
from channel_bridge.bridge.destinations import BridgeDestination
from channel_bridge.bridge.payloads import (
    AxpSendPayload,
    AxpTypingPayload,
    ConversationRef,
    NexusReceiptPayload,
    NexusReceiptRecord,
)
from channel_bridge.db.base import utcnow
from channel_bridge.db.models import CHANNEL_BACKEND_GENESYS_CLOUD, Channel
from channel_bridge.mappings.bookkeeping import agent_message_relayed
from channel_bridge.mappings.conversations import ConversationKey
from channel_bridge.mappings.repository import ConversationRepository
from channel_bridge.ops import metrics
from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.axp.destinations import AxpDestination
from channel_bridge.platforms.axp.schemas import MessageEvent as AxpMessageEvent
from channel_bridge.platforms.genesys_cloud.destinations import GenesysCloudDestination
from channel_bridge.platforms.genesys_cloud.schemas import (
    Attachment,
    Content,
    InboundChannel,
    InboundEvent,
    InboundMessage,
    InboundReceipt,
    InboundReceiptStatus,
    MessageEvent,
    OpenNormalizedMessage,
    Reason,
    ReceiptChannel,
    Typing,
    customer,
    media_type_for,
)
from channel_bridge.platforms.nexus.schemas import MediaItem
from channel_bridge.relay.destinations import Delivered, DeliveryContext
from channel_bridge.relay.envelope import DeliveryRequest, Plan

log = get_logger(__name__)

# Our link statuses -> the inbound receipt statuses Genesys takes (read: Delivered | Failed).
RECEIPT_STATUSES: dict[str, InboundReceiptStatus] = {"delivered": "Delivered", "failed": "Failed"}


def plan_genesys_cloud_message(
    channel: Channel, message: OpenNormalizedMessage, ack_id: str
) -> Plan:
    """The deliveries one accepted Genesys Cloud webhook event becomes."""
    if message.type == "Receipt":
        # (inferred) Genesys may name the message by our id (channel.messageId) or its own.
        ours = message.channel.messageId or ""
        receipt_for = ours if ours.startswith(nexus_to_axp.NEXUS_ID_PREFIX) else message.id
        record = NexusReceiptRecord(
            nexus_channel_id=channel.nexus_channel_id,
            receipt_for=receipt_for,
            status=message.status,
        )
        return Plan([DeliveryRequest(BridgeDestination.NEXUS_RECEIPT, record)])
    if (message.direction or "").lower() == "inbound":
        # The loop guard: a customer message is one we sent into Genesys. (A receipt names
        # the direction of the message it is about, so it is read before this.)
        metrics.bridge_events.labels("genesys_cloud.message", "echo").inc()
        return Plan([])
    address = message.customer_id
    if not address:
        log.warning("genesys cloud message without a recipient is not relayed", ack_id=ack_id)
        return Plan([])
    partition = partitions.nexus_to_axp(channel.nexus_channel_id, address)
    key = ConversationKey(channel.id, channel.nexus_channel_id, address)
    if message.type == "Event":
        if not message.is_typing:
            return Plan([])
        typing = AxpTypingPayload(
            nexus_channel_id=channel.nexus_channel_id, customer=address, ack_id=ack_id
        )
        return Plan(
            [DeliveryRequest(AxpDestination.TYPING, typing, partition_key=partition)],
            step=nexus_to_axp.OPEN_CONVERSATIONS,
            step_context=key,
        )
    media = [
        MediaItem(url=item.url, content_type=item.mime, filename=item.filename)
        for item in message.attachments
        if item.url
    ]
    if not message.text and not media:
        return Plan([])
    payload = AxpSendPayload(
        nexus_channel_id=channel.nexus_channel_id,
        customer=address,
        ack_id=ack_id,
        nexus_message_id=message.id,
        text=message.text,
        media=media,
        timestamp=message.channel.time.isoformat() if message.channel.time else None,
        origin=CHANNEL_BACKEND_GENESYS_CLOUD,
    )
    return Plan(
        [DeliveryRequest(AxpDestination.SEND_MESSAGE, payload, partition_key=partition)],
        step=nexus_to_axp.OPEN_CONVERSATIONS,
        step_context=key,
    )


async def send_agent_message(
    bridge: BridgeContext,
    ctx: DeliveryContext[Any],
    *,
    event: AxpMessageEvent,
    conversation: ConversationRef,
    channel: Channel,
    message_id: str,
    text: str | None,
) -> Delivered:
    """An AXP agent message -> `inbound/open/message` as the customer of the conversation."""
    message = InboundMessage(
        channel=InboundChannel(
            messageId=message_id,
            from_=customer(conversation.customer_address),
            time=_when(event.eventDate),
        ),
        text=text or None,
        content=await _attachments_for_genesys(bridge, event, conversation) or None,
    )
    answer = await bridge.genesys_cloud_client().send_message(channel.nexus_channel_id, message)
    relayed_id = answer.id or message_id
    metrics.bridge_events.labels("axp.message", "relayed").inc()
    return Delivered(
        result={"genesys_cloud_message_id": relayed_id},
        writes=agent_message_relayed(
            delivery_id=ctx.delivery_id,
            conversation_id=conversation.id,
            engagement_id=event.engagementId,
            dialog_id=event.dialogId,
            remote_message_id=relayed_id,
        ),
    )


async def send_receipt(
    bridge: BridgeContext, payload: NexusReceiptPayload, channel: Channel
) -> dict[str, Any]:
    """An AXP status of a customer message we relayed from Genesys -> `inbound/open/receipt`."""
    status = RECEIPT_STATUSES.get(payload.status or "")
    if status is None:
        return {"skipped": f"Genesys Cloud takes no {payload.status!r} receipt"}
    message_id = payload.remote_message_id or payload.receipt_for
    if not message_id or (payload.conversation_id is None and not payload.customer_address):
        return {"skipped": "the receipt names no relayed message"}
    address = payload.customer_address or await _customer_of(bridge, payload.conversation_id)
    if address is None:
        return {"skipped": "conversation gone"}
    reason = payload.failure_reason or "AXP reported the message failed"
    receipt = InboundReceipt(
        id=message_id,
        channel=ReceiptChannel(to=customer(address), time=utcnow()),
        status=status,
        reasons=[Reason(code="GeneralError", message=reason)] if status == "Failed" else None,
    )
    await bridge.genesys_cloud_client().send_receipt(channel.nexus_channel_id, receipt)
    metrics.bridge_events.labels("axp.status", payload.status or "").inc()
    return {"receipt_for": message_id, "status": status}


async def _customer_of(bridge: BridgeContext, conversation_id: int | None) -> str | None:
    if conversation_id is None:
        return None
    async with bridge.sessionmaker() as session:
        conversation = await ConversationRepository(session).get(conversation_id)
    return conversation.customer_address if conversation is not None else None


def report_dead_send(payload: AxpSendPayload) -> list[DeliveryRequest]:
    """A Genesys Cloud agent's message that never reached AXP -> a `Failed` receipt to Genesys.

    The relay calls this as the send goes dead (permanent error, or retries spent) and stores
    the receipt's delivery with the dead outcome; without it the agent would see the message
    as sent. A Nexus message (no `origin`) leaves nothing behind.
    """
    if payload.origin != CHANNEL_BACKEND_GENESYS_CLOUD or not payload.nexus_message_id:
        return []
    receipt = NexusReceiptPayload(
        nexus_channel_id=payload.nexus_channel_id,
        receipt_for=payload.nexus_message_id,
        status="failed",
        remote_message_id=payload.nexus_message_id,
        conversation_id=payload.conversation_id,
        customer_address=payload.customer,
        failure_reason="the bridge could not deliver the message to AXP",
    )
    # Behind the conversation's other deliveries to Genesys, in order.
    partition = (
        partitions.axp_to_nexus(payload.provider_dialog_id) if payload.provider_dialog_id else None
    )
    return [DeliveryRequest(GenesysCloudDestination.RECEIPT, receipt, partition_key=partition)]


async def send_typing(
    bridge: BridgeContext, *, channel: Channel, customer_address: str
) -> dict[str, Any]:
    """AXP agent typing -> `inbound/open/event` (Typing On) from the conversation's customer."""
    event = InboundEvent(
        channel=InboundChannel(from_=customer(customer_address), time=utcnow()),
        events=[MessageEvent(eventType="Typing", typing=Typing(type="On"))],
    )
    await bridge.genesys_cloud_client().send_event(channel.nexus_channel_id, event)
    return {"typing": customer_address}


async def _attachments_for_genesys(
    bridge: BridgeContext, event: AxpMessageEvent, conversation: ConversationRef
) -> list[Content]:
    """The AXP message's attachments as Genesys content: each a fresh signed AXP download URL.

    Genesys fetches an inbound attachment from its `url` itself (inferred), and AXP's signed
    media URLs need no credentials. The callback's own URL may have expired by the time a
    retried delivery runs, so a fresh one is asked for by the attachment's mediaId.
    """
    if not event.attachments:
        return []
    if not bridge.settings.genesys_cloud_relay_axp_attachments:
        log.warning(
            "axp attachments are not relayed to genesys cloud "
            "(BRIDGE_GENESYS_CLOUD_RELAY_AXP_ATTACHMENTS is false)",
            attachments=len(event.attachments),
            conversation_id=conversation.id,
        )
        return []
    content = []
    for attachment in event.attachments:
        signed = await bridge.axp.media.signed_download_uri(attachment.attachmentId)
        content.append(
            Content(
                attachment=Attachment(
                    mediaType=media_type_for(attachment.contentType),
                    url=bridge.axp.media.resolve(signed),
                    mime=attachment.contentType,
                    filename=attachment.name,
                )
            )
        )
    return content


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return utcnow()
