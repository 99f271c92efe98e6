"""AXP notification callbacks -> Nexus: agent messages, receipts, typing, conversation state.

Loop guard: a MESSAGES event whose sender is the CUSTOMER is the echo of a message we sent into
AXP. It never goes back to Nexus; only its status (DELIVERED, READ, FAILED) becomes a receipt.

The callback route stores the event with its deliveries in one transaction, and in it
`ResolveAxpEvents` finds what each delivery needs: an agent message's conversation (and its
message link is created, so the same AXP message is relayed once), a status's message link
(moved forward there, so only a newer status becomes a receipt). The handlers then build
their Nexus requests from the payload and the cached channel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.bridge import genesys_cloud, partitions
from channel_bridge.bridge.context import BridgeContext
from channel_bridge.bridge.destinations import BridgeDestination
from channel_bridge.bridge.nexus_to_axp import NEXUS_ID_PREFIX
from channel_bridge.bridge.payloads import (
    AgentMessagePayload,
    ConversationEventPayload,
    ConversationRef,
    NexusReceiptPayload,
)
from channel_bridge.db.base import utcnow
from channel_bridge.db.models import (
    CHANNEL_BACKEND_GENESYS_CLOUD,
    Channel,
    Conversation,
    LinkDirection,
    MessageLink,
)
from channel_bridge.mappings.bookkeeping import agent_message_relayed
from channel_bridge.mappings.conversations import ConversationService
from channel_bridge.mappings.repository import (
    ChannelRepository,
    ConversationRepository,
    MessageLinkRepository,
    routes_and_linked_messages,
)
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
from channel_bridge.platforms.genesys_cloud.destinations import GenesysCloudDestination
from channel_bridge.platforms.nexus.destinations import NexusDestination
from channel_bridge.platforms.nexus.schemas import (
    MediaItem,
    build_inbound_message,
    build_receipt,
    build_typing,
)
from channel_bridge.relay.destinations import (
    Delivered,
    DeliveryContext,
    delivery_id_from_idempotency_key,
    idempotency_key_for,
)
from channel_bridge.relay.envelope import (
    DELIVERY_SEQUENCE,
    AcceptedEvent,
    DeliveryRequest,
    Plan,
    RowsNamingDeliveries,
)
from channel_bridge.relay.service import mark_delivery_failed

log = get_logger(__name__)


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


def nexus_message_id_for(event: MessageEvent, delivery_id: int | None) -> str:
    """The id an agent message gets in Nexus: stable per AXP message, so a retry carries it.

    Made from the AXP messageId; from the delivery's id (`delivery_id`, then required) for a
    message without one.
    """
    if event.messageId:
        return f"{NEXUS_ID_PREFIX}{event.messageId}"
    if delivery_id is None:
        raise ValueError("an AXP message without a messageId needs its delivery id")
    return f"{NEXUS_ID_PREFIX}{idempotency_key_for(delivery_id)}"


class ResolveAxpEvents:
    """Accept step: the conversation of each agent message, the link of each status."""

    name = "bridge.axp_to_nexus"

    async def before_deliveries(
        self, session: AsyncSession, events: Sequence[AcceptedEvent]
    ) -> None:
        messages = [
            request.payload
            for event in events
            for request in event.deliveries
            if isinstance(request.payload, AgentMessagePayload)
        ]
        # The messages' conversations and which were relayed already: one statement.
        read = await routes_and_linked_messages(
            session,
            {m.event.providerDialogId for m in messages if m.event.providerDialogId},
            {m.event.messageId for m in messages if m.event.messageId},
        )
        conversations = iter(
            await _conversations_for(
                session, [m.event for m in messages], by_dialog=_refs_by_dialog(read.routes)
            )
        )
        relayed = read.linked
        statuses = _StatusLinks(session)
        await statuses.load(
            [
                request.payload.event
                for event in events
                for request in event.deliveries
                if isinstance(request.payload, NexusReceiptPayload) and request.payload.event
            ]
        )
        for event in events:
            kept: list[DeliveryRequest] = []
            for request in event.deliveries:
                payload = request.payload
                if isinstance(payload, AgentMessagePayload):
                    found = next(conversations)  # in the order `messages` was built
                    message_id = payload.event.messageId
                    if message_id and message_id in relayed:
                        # The same agent message again with another status: relayed once.
                        metrics.bridge_events.labels("axp.message", "duplicate").inc()
                        continue
                    if message_id:
                        relayed.add(message_id)
                    kept.append(
                        request.with_payload(
                            payload.model_copy(update={"conversation": found, "resolved": True})
                        )
                    )
                elif isinstance(payload, NexusReceiptPayload) and payload.event is not None:
                    receipt = await statuses.advance(payload.event)
                    if receipt is not None:
                        kept.append(request.with_payload(receipt))
                else:
                    kept.append(request)
            event.deliveries = kept
        await _route_by_backend(session, events)

    def rows_naming_deliveries(
        self, events: Sequence[AcceptedEvent]
    ) -> Sequence[RowsNamingDeliveries]:
        """The link of each agent message with an AXP messageId, written with its delivery."""
        now = utcnow()
        links = [
            {**_agent_link(request.payload, None, now), DELIVERY_SEQUENCE: sequence}
            for event in events
            for request, sequence in zip(event.deliveries, event.delivery_sequences, strict=True)
            if isinstance(request.payload, AgentMessagePayload)
            and request.payload.conversation is not None
            and request.payload.event.messageId
        ]
        return [MessageLinkRepository.written_with_deliveries(links)]

    async def after_deliveries(
        self, session: AsyncSession, events: Sequence[AcceptedEvent]
    ) -> None:
        """The link of an agent message without a messageId: its Nexus id is made from its
        delivery's id (`nexus_message_id_for`), known only now."""
        now = utcnow()
        links = []
        for event in events:
            for request, delivery_id in zip(event.deliveries, event.delivery_ids, strict=True):
                payload = request.payload
                if (
                    isinstance(payload, AgentMessagePayload)
                    and payload.conversation is not None
                    and not payload.event.messageId
                ):
                    links.append(
                        {**_agent_link(payload, delivery_id, now), "delivery_id": delivery_id}
                    )
        await MessageLinkRepository(session).insert_many(links)


RESOLVE_AXP_EVENTS = ResolveAxpEvents()

# The destination of a genesys-cloud channel's delivery: same handler, its own circuit.
_GENESYS_CLOUD_DESTINATIONS: dict[str, str] = {
    NexusDestination.SEND_MESSAGE: GenesysCloudDestination.SEND_MESSAGE,
    NexusDestination.RECEIPT: GenesysCloudDestination.RECEIPT,
    NexusDestination.TYPING: GenesysCloudDestination.TYPING,
}


def _channel_of(request: DeliveryRequest, typing_channels: dict[str, str]) -> str | None:
    payload = request.payload
    if isinstance(payload, AgentMessagePayload) and payload.conversation is not None:
        return payload.conversation.nexus_channel_id
    if isinstance(payload, NexusReceiptPayload):
        return payload.nexus_channel_id
    if request.destination == NexusDestination.TYPING:
        return typing_channels.get(_typing_dialog(request) or "")
    return None


def _typing_dialog(request: DeliveryRequest) -> str | None:
    payload = request.payload
    dialog = payload.get("providerDialogId") if isinstance(payload, Mapping) else None
    return dialog if isinstance(dialog, str) else None


async def _route_by_backend(session: AsyncSession, events: Sequence[AcceptedEvent]) -> None:
    """Deliveries for a genesys-cloud channel go to the Genesys Cloud destinations."""
    typing_dialogs = {
        dialog
        for event in events
        for request in event.deliveries
        if request.destination == NexusDestination.TYPING and (dialog := _typing_dialog(request))
    }
    typing_channels = {
        dialog: ref.nexus_channel_id
        for dialog, ref in (
            await _ConversationLookup(session).by_provider_dialog_id(typing_dialogs)
        ).items()
    }
    channel_ids = {
        channel_id
        for event in events
        for request in event.deliveries
        if (channel_id := _channel_of(request, typing_channels)) is not None
    }
    if not channel_ids:
        return
    backends = await ChannelRepository(session).backends_of(channel_ids)
    for event in events:
        event.deliveries = [
            replace(request, destination=_GENESYS_CLOUD_DESTINATIONS[request.destination])
            if backends.get(_channel_of(request, typing_channels) or "")
            == CHANNEL_BACKEND_GENESYS_CLOUD
            and request.destination in _GENESYS_CLOUD_DESTINATIONS
            else request
            for request in event.deliveries
        ]


def _agent_link(payload: AgentMessagePayload, delivery_id: int | None, now: Any) -> dict[str, Any]:
    """Every column of an agent message's link but `id` and `delivery_id`."""
    assert payload.conversation is not None
    return MessageLinkRepository.pending_row(
        LinkDirection.AXP_TO_NEXUS,
        conversation_id=payload.conversation.id,
        nexus_message_id=nexus_message_id_for(payload.event, delivery_id),
        axp_message_id=payload.event.messageId,
        now=now,
    )


async def _conversations_for(
    session: AsyncSession,
    events: Sequence[MessageEvent],
    *,
    by_dialog: dict[str, ConversationRef] | None = None,
) -> list[ConversationRef | None]:
    """The conversation of each event, in order; None where it is not one of ours.

    `by_dialog`: the events' conversations by providerDialogId, when already read."""
    lookup = _ConversationLookup(session)
    if by_dialog is None:
        by_dialog = await lookup.by_provider_dialog_id(
            {event.providerDialogId for event in events if event.providerDialogId}
        )
    found: list[ConversationRef | None] = []
    for event in events:
        ref = by_dialog.get(event.providerDialogId or "")
        if ref is None:
            # Rare: no providerDialogId, or not one of ours. The customer recipient's
            # providerParticipantId on the event's channel is the other way in.
            ref = await lookup.by_customer(event)
        found.append(ref)
    return found


class _ConversationLookup:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_provider_dialog_id(
        self, provider_dialog_ids: set[str]
    ) -> dict[str, ConversationRef]:
        if not provider_dialog_ids:
            return {}
        routes = await ConversationRepository(self.session).routes_by_dialog(provider_dialog_ids)
        return _refs_by_dialog(routes)

    async def by_customer(self, event: MessageEvent) -> ConversationRef | None:
        """The customer recipient's open conversation on the event's channel (no query when
        the event names no customer)."""
        customer = event.customer_recipient()
        if customer is None or not customer.providerParticipantId:
            return None
        found = await _find_by_customer(self.session, event, customer.providerParticipantId)
        return _ref(found[0], found[1].nexus_channel_id) if found is not None else None


def _refs_by_dialog(routes: Sequence[Any]) -> dict[str, ConversationRef]:
    """`ConversationRepository.routes_by_dialog`'s rows, by providerDialogId."""
    return {
        route.provider_dialog_id: ConversationRef(
            id=route.id,
            provider_dialog_id=route.provider_dialog_id,
            nexus_channel_id=route.nexus_channel_id,
            customer_address=route.customer_address,
        )
        for route in routes
    }


def _ref(conversation: Conversation, nexus_channel_id: str) -> ConversationRef:
    return ConversationRef(
        id=conversation.id,
        provider_dialog_id=conversation.provider_dialog_id,
        nexus_channel_id=nexus_channel_id,
        customer_address=conversation.customer_address,
    )


class _StatusLinks:
    """Message links for AXP statuses, loaded for a whole batch and moved forward in order."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._links = MessageLinkRepository(session)
        self._by_axp: dict[str, MessageLink] = {}
        self._by_nexus: dict[str, MessageLink] = {}
        self._by_ack: dict[str, MessageLink] = {}
        self._channels: dict[int, str] = {}

    async def load(self, events: Sequence[MessageEvent]) -> None:
        if not events:
            return
        self._by_axp = await self._links.by_axp_message_id(
            {event.messageId for event in events if event.messageId}
        )
        provider_ids = {event.providerMessageId for event in events if event.providerMessageId}
        self._by_nexus = await self._links.by_nexus_message_id(
            provider_ids, direction=LinkDirection.NEXUS_TO_AXP
        )
        # A Nexus message without an id was sent with our ack id as providerMessageId.
        self._by_ack = await self._links.by_ack_id(provider_ids - self._by_nexus.keys())
        conversation_ids = {
            link.conversation_id
            for links in (self._by_axp, self._by_nexus, self._by_ack)
            for link in links.values()
            if link.conversation_id is not None
        }
        self._channels = await ChannelRepository(self.session).nexus_channel_ids_of_conversations(
            conversation_ids
        )

    async def advance(self, event: MessageEvent) -> NexusReceiptPayload | None:
        """The receipt to send for this status, or None when there is nothing newer to tell."""
        status = RECEIPT_STATUSES[event.status]
        link = self._by_axp.get(event.messageId or "")
        if link is None and event.providerMessageId:
            # The status can come before AXP's message id is on the link (race, lost answer).
            link = self._by_nexus.get(event.providerMessageId) or self._by_ack.get(
                event.providerMessageId
            )
        if link is None or link.direction != LinkDirection.NEXUS_TO_AXP or not link.ack_id:
            metrics.bridge_events.labels("axp.status", "unroutable").inc()
            return None
        if link.axp_message_id is None and event.messageId:
            link.axp_message_id = event.messageId
            self._by_axp[event.messageId] = link
        if not await self._links.update_status(link, status, detail=event.status):
            metrics.bridge_events.labels("axp.status", "stale").inc()
            return None
        channel = self._channels.get(link.conversation_id or 0)
        if channel is None:
            metrics.bridge_events.labels("axp.status", "unroutable").inc()
            return None
        return NexusReceiptPayload(
            nexus_channel_id=channel,
            receipt_for=link.ack_id,
            status=status,
            remote_message_id=link.nexus_message_id,
            conversation_id=link.conversation_id,
        )


def make_axp_event_planner(*, typing_enabled: bool) -> Callable[[AxpCallbackEvent], Plan]:
    def plan(event: AxpCallbackEvent) -> Plan:
        partition = partitions.axp_to_nexus(_conversation_key(event))
        if isinstance(event, MessageEvent):
            if event.senderParticipantType == CUSTOMER:
                if event.status not in RECEIPT_STATUSES:
                    metrics.bridge_events.labels("axp.message", "echo").inc()
                    return Plan([])
                receipt = NexusReceiptPayload(event=event)
                return Plan(
                    [DeliveryRequest(NexusDestination.RECEIPT, receipt, partition_key=partition)],
                    step=RESOLVE_AXP_EVENTS,
                )
            message = AgentMessagePayload(event=event)
            return Plan(
                [DeliveryRequest(NexusDestination.SEND_MESSAGE, message, partition_key=partition)],
                step=RESOLVE_AXP_EVENTS,
            )
        if isinstance(event, TypingEvent):
            if not typing_enabled or event.senderParticipantType == CUSTOMER:
                return Plan([])
            return Plan(
                [
                    DeliveryRequest(
                        NexusDestination.TYPING, _event_payload(event), partition_key=partition
                    )
                ],
                # Only to route it: a genesys-cloud channel's typing has its own destination.
                step=RESOLVE_AXP_EVENTS,
            )
        if isinstance(event, ParticipantEvent | EngagementCreatedEvent | EngagementErrorEvent):
            return Plan(
                [
                    DeliveryRequest(
                        BridgeDestination.CONVERSATION_EVENT,
                        _event_payload(event),
                        partition_key=partition,
                    )
                ]
            )
        return Plan([])

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
    return await _find_by_customer(session, event, customer.providerParticipantId)


async def _find_by_customer(
    session: AsyncSession, event: MessageEvent | TypingEvent, customer_address: str
) -> tuple[Conversation, Channel] | None:
    """The customer's open conversation on the event's channel."""
    channel = await _channel_for(session, event)
    if channel is None:
        return None
    conversation = await ConversationService().find_open_by_customer(
        session, channel.id, customer_address
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


async def deliver_agent_message(
    bridge: BridgeContext, ctx: DeliveryContext[AgentMessagePayload]
) -> Delivered | dict[str, Any]:
    payload = ctx.payload
    event = payload.event
    if not payload.resolved:
        resolved = await _resolve_at_send(bridge, payload, ctx.delivery_id)
        if resolved is None:
            return {"skipped": "already relayed", "axp_message_id": event.messageId}
        payload = resolved
    conversation = payload.conversation
    if conversation is None:
        metrics.bridge_events.labels("axp.message", "unroutable").inc()
        log.warning(
            "axp message for an unknown conversation is not relayed",
            provider_dialog_id=event.providerDialogId,
            axp_message_id=event.messageId,
        )
        return {"skipped": "unknown conversation"}
    channel = await bridge.channel(conversation.nexus_channel_id)
    if channel is None or not channel.enabled:
        metrics.bridge_events.labels("axp.message", "channel_disabled").inc()
        return {"skipped": f"channel {conversation.nexus_channel_id} disabled"}

    if channel.backend == CHANNEL_BACKEND_GENESYS_CLOUD:
        return await genesys_cloud.send_agent_message(
            bridge,
            ctx,
            event=event,
            conversation=conversation,
            channel=channel,
            message_id=nexus_message_id_for(event, ctx.delivery_id),
            text=_text_of(event),
        )
    api_secret = bridge.nexus_api_secret(channel)
    media: list[MediaItem] = []
    for attachment in event.attachments or ():
        async with await bridge.axp.media.download(attachment.url) as spool:
            uploaded = await bridge.nexus.upload_media(
                channel.nexus_channel_id,
                api_secret,
                spool,
                spool.filename or attachment.name,
                spool.content_type or attachment.contentType,
            )
        media.append(
            MediaItem(
                url=uploaded.url,
                content_type=uploaded.mimetype or attachment.contentType,
                filename=uploaded.filename or attachment.name,
            )
        )
    nexus_message_id = nexus_message_id_for(event, ctx.delivery_id)
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
    answer = await bridge.nexus.post_to_nexus(channel.nexus_channel_id, api_secret, message)
    remote_id = (answer.get("messageId") or answer.get("id")) if isinstance(answer, dict) else None
    relayed_id = str(remote_id or nexus_message_id)
    metrics.bridge_events.labels("axp.message", "relayed").inc()
    log.debug(
        "relayed axp message to nexus",
        conversation_id=conversation.id,
        nexus_message_id=relayed_id,
        attachments=len(media),
    )
    return Delivered(
        result={"nexus_message_id": relayed_id, "attachments": len(media)},
        writes=agent_message_relayed(
            delivery_id=ctx.delivery_id,
            conversation_id=conversation.id,
            engagement_id=event.engagementId,
            dialog_id=event.dialogId,
            remote_message_id=relayed_id,
        ),
    )


async def _resolve_at_send(
    bridge: BridgeContext, payload: AgentMessagePayload, delivery_id: int
) -> AgentMessagePayload | None:
    """A row queued before agent messages were resolved at accept: resolve it now; None if
    the same AXP message was already relayed."""
    event = payload.event
    async with bridge.sessionmaker() as session, session.begin():
        links = MessageLinkRepository(session)
        if event.messageId and await links.find_by_axp_message_id(event.messageId):
            return None
        [found] = await _conversations_for(session, [event])
        resolved = payload.model_copy(update={"conversation": found, "resolved": True})
        if found is not None:
            await links.insert_many([_agent_link(resolved, delivery_id, utcnow())])
    return resolved


async def deliver_receipt(
    bridge: BridgeContext, ctx: DeliveryContext[NexusReceiptPayload]
) -> dict[str, Any]:
    """A status change on a customer message we relayed from Nexus -> Nexus receipt."""
    payload: NexusReceiptPayload | None = ctx.payload
    if payload is not None and payload.event is not None:
        # Queued before statuses were resolved at accept.
        event = payload.event
        async with bridge.sessionmaker() as session, session.begin():
            statuses = _StatusLinks(session)
            await statuses.load([event])
            payload = await statuses.advance(event)
        if payload is None:
            return {"skipped": "no relayed message for this status, or not newer"}
    assert payload is not None and payload.nexus_channel_id and payload.receipt_for
    channel = await bridge.channel(payload.nexus_channel_id)
    if channel is None:
        return {"skipped": "channel gone"}
    if channel.backend == CHANNEL_BACKEND_GENESYS_CLOUD:
        return await genesys_cloud.send_receipt(bridge, payload, channel)
    status = payload.status or ""
    receipt = build_receipt(bridge.nexus_fields, message_id=payload.receipt_for, status=status)
    await bridge.nexus.send_receipt(
        channel.nexus_channel_id, bridge.nexus_api_secret(channel), receipt
    )
    metrics.bridge_events.labels("axp.status", status).inc()
    return {"receipt_for": payload.receipt_for, "status": status}


async def deliver_typing(
    bridge: BridgeContext, ctx: DeliveryContext[TypingEvent]
) -> dict[str, Any] | None:
    event = ctx.payload
    async with bridge.sessionmaker() as session:
        found = await _find_conversation(session, event)
    if found is None:
        return {"skipped": "unknown conversation"}
    conversation, channel = found
    if channel.backend == CHANNEL_BACKEND_GENESYS_CLOUD:
        return await genesys_cloud.send_typing(
            bridge, channel=channel, customer_address=conversation.customer_address
        )
    if not bridge.settings.nexus_typing_enabled:
        # Typing is planned for Genesys Cloud channels; Nexus typing stays off unless enabled.
        return {"skipped": "BRIDGE_NEXUS_TYPING_ENABLED is false"}
    indicator = build_typing(
        bridge.nexus_fields,
        channel_id=channel.nexus_channel_id,
        from_address=conversation.customer_address,
    )
    await bridge.nexus.send_typing(
        channel.nexus_channel_id, bridge.nexus_api_secret(channel), indicator
    )
    return {"typing": conversation.provider_dialog_id}


async def deliver_conversation_event(
    bridge: BridgeContext, ctx: DeliveryContext[ConversationEventPayload]
) -> dict[str, Any]:
    """ENGAGEMENT_CREATED, PARTICIPANT_DISCONNECTED and ENGAGEMENT_ERROR update our state.

    These are the bridge's own bookkeeping (no call to make), in a transaction of their own;
    each is idempotent, so a repeat after a crash changes nothing more.
    """
    event = ctx.payload.root
    conversations = ConversationService()
    async with bridge.sessionmaker() as session, session.begin():
        dialog_id = event.providerDialogId
        conversation = (
            await conversations.find_by_provider_dialog_id(session, dialog_id)
            if dialog_id
            else None
        )
        if isinstance(event, EngagementCreatedEvent):
            if conversation is None:
                return {"skipped": "unknown conversation"}
            await conversations.record_axp_ids(
                session, conversation, engagement_id=event.engagementId, dialog_id=event.dialogId
            )
            return {"engagement_id": event.engagementId}
        if isinstance(event, ParticipantEvent):
            if event.eventType != "PARTICIPANT_DISCONNECTED":
                return {"skipped": f"{event.eventType} needs no action"}
            if conversation is None:
                return {"skipped": "unknown conversation"}
            if (event.participantType or "").upper() not in CLOSING_PARTICIPANTS:
                return {"skipped": f"{event.participantType} left; conversation stays open"}
            closed = await conversations.close(
                session, conversation, reason=f"{event.participantType} disconnected in AXP"
            )
            return {"closed": closed, "provider_dialog_id": conversation.provider_dialog_id}
        return await _engagement_error(session, event)


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
