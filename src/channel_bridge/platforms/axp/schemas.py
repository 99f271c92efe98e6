"""AXP wire models, field for field from the vendor OpenAPI files.

Sources: Digital - Custom Messaging 1.0.4 (`SendAsyncMessage`, `TypingIndicator`,
`DisconnectProviderDialog`, `AsyncMessage`), Digital - Notification 1.0.1 (`Subscription` and
the callback events), Digital - Signed Media URI 1.0.1 and Signed Media 1.0.1.

What we send is strict (`extra="forbid"`, the spec's limits enforced) and serialised with
`exclude_none`, so a mistake fails here and not at AXP. What AXP sends us is lenient
(`extra="allow"`, enums kept as plain strings): a new vendor field or value must never make us
reject a callback, because AXP would redeliver it for ever.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

UUID_PATTERN = r"^[0-9a-fA-F]{8}\-[0-9a-fA-F]{4}\-[0-9a-fA-F]{4}\-[0-9a-fA-F]{4}\-[0-9a-fA-F]{12}$"

ParticipantType = Literal["CUSTOMER", "AGENT", "SUPERVISOR", "SYSTEM", "BOT"]
TextFormat = Literal["PLAINTEXT", "HTML", "MARKDOWN"]
DisconnectReason = Literal["USER_CLOSED", "USER_INACTIVE", "SYSTEM_CLOSED", "UNKNOWN"]
SubscriptionEventType = Literal[
    "MESSAGES",
    "CUSTOMER_MESSAGES",
    "CC_MESSAGES",
    "PARTICIPANT_ADDED",
    "PARTICIPANT_DISCONNECTED",
    "ENGAGEMENT_CREATED",
    "ENGAGEMENT_ERROR",
    "TYPING",
    "ALL",
]
# Notification 1.0.1 `EventType`: the eventType values a callback carries today.
KNOWN_EVENT_TYPES = (
    "MESSAGES",
    "PARTICIPANT_ADDED",
    "PARTICIPANT_DISCONNECTED",
    "ENGAGEMENT_CREATED",
    "ENGAGEMENT_ERROR",
    "TYPING",
)
# `MessageStatus` (1.0.4 / 1.0.1).
MESSAGE_STATUSES = ("NONE", "SENT", "DELIVERED", "READ", "FAILED", "DELETED")


def _s(
    min_length: int | None = None, max_length: int | None = None, pattern: str | None = None
) -> Any:
    return Annotated[
        str, StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern)
    ]


class Outbound(BaseModel):
    """A request body we send: unknown fields are a bug, absent fields are omitted."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def to_wire_json(self) -> bytes:
        """The same document as `to_wire`, serialised (pydantic-core's encoder: no dict)."""
        return self.model_dump_json(exclude_none=True, by_alias=True).encode()


class Inbound(BaseModel):
    """A body AXP sends: unknown fields are kept, never refused."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --- outbound: Custom Messaging 1.0.4 ---------------------------------------------------


class ElementText(Outbound):
    text: _s(max_length=524288)
    textFormat: TextFormat | None = None


class Action(Outbound):
    type: _s(1, 50)
    text: _s(max_length=50) | None = None
    payload: _s(max_length=512) | None = None
    uri: str | None = None
    iconUrl: str | None = None


class Coordinates(Outbound):
    lat: Annotated[float, Field(ge=-90, le=90)]
    long: Annotated[float, Field(ge=-180, le=180)]


class Location(Outbound):
    address: _s(max_length=512) | None = None
    name: _s(max_length=50) | None = None


class Item(Outbound):
    title: _s(1, 50)
    mediaUrl: str | None = None
    description: _s(max_length=256) | None = None
    actions: Annotated[list[Action], Field(min_length=1, max_length=5)]


class RichMediaPayload(Outbound):
    selectedAction: Action | None = None
    actions: Annotated[list[Action], Field(min_length=1, max_length=5)] | None = None
    items: Annotated[list[Item], Field(min_length=1, max_length=10)] | None = None
    coordinates: Coordinates | None = None
    location: Location | None = None


class BodyElement(Outbound):
    elementType: _s(1, 50)
    elementText: ElementText | None = None
    payload: _s(max_length=4096) | None = None
    richMediaPayload: RichMediaPayload | None = None


class MessageHeaders(Outbound):
    sourceAddress: _s(max_length=256) | None = None
    sourceType: _s(max_length=100) | None = None
    priority: _s(max_length=32) | None = None
    sensitivity: _s(max_length=32) | None = None
    encoding: _s(max_length=32) | None = None
    subject: _s(max_length=256) | None = None
    from_: Annotated[_s(max_length=256) | None, Field(alias="from")] = None
    to: Annotated[list[_s(max_length=256)], Field(max_length=20)] | None = None
    cc: Annotated[list[_s(max_length=256)], Field(max_length=20)] | None = None
    bcc: Annotated[list[_s(max_length=256)], Field(max_length=20)] | None = None
    replyTo: _s(max_length=256) | None = None
    clientDeviceTag: _s(max_length=256) | None = None
    messageSourceServerTag: _s(max_length=256) | None = None
    # date-time; sent as the caller formatted it (ISO 8601 with zone).
    providerTimestamp: str | None = None
    additionalHeaders: dict[str, str] | None = None


class AttachmentContentIdMap(Outbound):
    attachmentId: _s(36, 36, UUID_PATTERN)
    contentId: _s(max_length=256) | None = None


CustomerIdentifiers = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=50)],
        Annotated[list[_s(1, 256)], Field(max_length=5)],
    ],
    Field(min_length=1, max_length=10),
]
ShortMap = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], _s(max_length=256)],
    Field(max_length=20),
]


class SendAsyncMessage(Outbound):
    """`POST /accounts/{accountId}/messages` request body."""

    channelProviderId: _s(3, 256)
    channelId: _s(3, 50)
    businessAccountName: _s(3, 256)
    customerIdentifiers: CustomerIdentifiers
    senderName: _s(max_length=70) | None = None
    providerSenderId: _s(max_length=256) | None = None
    providerDialogId: _s(max_length=256) | None = None
    providerMessageId: _s(max_length=256) | None = None
    providerParentMessageId: _s(max_length=256) | None = None
    body: BodyElement
    fallbackText: _s(max_length=256) | None = None
    headers: MessageHeaders | None = None
    attachments: Annotated[list[AttachmentContentIdMap], Field(max_length=25)] | None = None
    customData: ShortMap | None = None
    engagementParameters: ShortMap | None = None
    correlationId: _s(max_length=256) | None = None


class TypingIndicator(Outbound):
    """`POST /accounts/{accountId}/provider-dialogs/{providerDialogId}:typing` body."""

    channelProviderId: _s(3, 256)
    businessAccountName: _s(3, 256)
    correlationId: _s(max_length=256) | None = None


class DisconnectProviderDialog(Outbound):
    """`POST /accounts/{accountId}/provider-dialogs/{providerDialogId}:disconnect` body."""

    channelProviderId: _s(3, 256)
    businessAccountName: _s(3, 256)
    reason: DisconnectReason | None = None
    correlationId: _s(max_length=256) | None = None


# --- outbound: Notification 1.0.1 and Signed Media URI 1.0.1 ----------------------------


class SubscriptionRequest(Outbound):
    """Create (POST) and replace (PUT) body; the PUT example repeats subscriptionId."""

    subscriptionId: _s(36, 36, UUID_PATTERN) | None = None
    channelProviderId: _s(3, 256)
    callbackUrl: _s(max_length=2048)
    eventTypes: Annotated[list[SubscriptionEventType], Field(min_length=1, max_length=6)]


class SignedMediaUploadRequest(Outbound):
    mediaName: _s(1, 255)
    mediaContentType: _s(1, 255)
    mediaSize: Annotated[int, Field(ge=1)]


# --- inbound: responses ----------------------------------------------------------------


class Subscription(Inbound):
    subscriptionId: str | None = None
    channelProviderId: str
    callbackUrl: str
    eventTypes: list[str]


class AsyncMessage(Inbound):
    """The 200 answer to a send; only the ids matter to us, the rest is kept as extra."""

    messageId: str | None = None
    accountId: str | None = None
    dialogId: str | None = None
    engagementId: str | None = None
    status: str | None = None
    providerDialogId: str | None = None
    providerMessageId: str | None = None
    correlationId: str | None = None


class SignedMediaUpload(Inbound):
    mediaName: str | None = None
    mediaContentType: str | None = None
    mediaSize: float | None = None
    mediaId: str
    uploadSignedUri: str


class SignedMediaDownload(Inbound):
    mediaId: str | None = None
    downloadSignedUri: str


class UploadMediaResponse(Inbound):
    mediaId: str | None = None
    mediaName: str | None = None


# --- inbound: callback events (Notification 1.0.1) -------------------------------------


class InboundElementText(Inbound):
    text: str
    textFormat: str | None = None


class InboundAction(Inbound):
    type: str
    text: str | None = None
    payload: str | None = None
    uri: str | None = None
    iconUrl: str | None = None


class InboundCoordinates(Inbound):
    lat: float
    long: float


class InboundLocation(Inbound):
    address: str | None = None
    name: str | None = None


class InboundItem(Inbound):
    title: str
    mediaUrl: str | None = None
    description: str | None = None
    actions: list[InboundAction] = Field(default_factory=list)


class InboundRichMediaPayload(Inbound):
    selectedAction: InboundAction | None = None
    actions: list[InboundAction] | None = None
    items: list[InboundItem] | None = None
    coordinates: InboundCoordinates | None = None
    location: InboundLocation | None = None


class InboundBodyElement(Inbound):
    elementType: str
    elementText: InboundElementText | None = None
    payload: str | None = None
    richMediaPayload: InboundRichMediaPayload | None = None


class InboundMessageHeaders(Inbound):
    sourceAddress: str | None = None
    sourceType: str | None = None
    priority: str | None = None
    sensitivity: str | None = None
    encoding: str | None = None
    subject: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: list[str] | None = None
    cc: list[str] | None = None
    bcc: list[str] | None = None
    replyTo: str | None = None
    clientDeviceTag: str | None = None
    messageSourceServerTag: str | None = None
    providerTimestamp: str | None = None
    additionalHeaders: dict[str, str] | None = None


class Attachment(Inbound):
    attachmentId: str
    name: str
    size: int
    contentType: str
    contentId: str | None = None
    # Relative and signed (`/v1/media/{id}?ttl=…&signature=…`) or absolute on the AXP host.
    url: str
    captionText: str | None = None
    thumbnailUrl: str | None = None
    additionalProperties: dict[str, str] | None = None


class Participant(Inbound):
    participantId: str
    participantType: str
    displayName: str | None = None
    connectionId: str
    providerParticipantId: str | None = None
    channelProviderId: str


class ExternalRecipientParticipant(Inbound):
    participantId: str
    providerParticipantId: str | None = None


class EventData(Inbound):
    """`EventData`: the envelope every callback carries, flattened next to the event fields."""

    eventType: str
    # Listed as required, described as "an optional field" (Notification spec 1.0.1): an
    # event without it is accepted, since AXP re-sends an event that is refused.
    correlationId: str | None = None
    eventDate: str


class MessageEvent(EventData):
    eventType: Literal["MESSAGES"]
    messageId: str | None = None
    accountId: str
    dialogId: str | None = None
    engagementId: str | None = None
    status: str
    sessionId: str | None = None
    businessAccountName: str | None = None
    channelProviderId: str
    channelId: str
    senderParticipantId: str
    senderParticipantName: str
    senderParticipantType: str
    body: InboundBodyElement
    fallbackText: str | None = None
    headers: InboundMessageHeaders | None = None
    attachments: list[Attachment] | None = None
    recipientParticipants: list[Participant] | None = None
    customData: dict[str, str] | None = None
    messageIndex: int | None = None
    parentMessageId: str | None = None
    providerDialogId: str | None = None
    providerSenderId: str | None = None
    providerMessageId: str | None = None
    providerParentMessageId: str | None = None
    engagementParameters: dict[str, str] | None = None
    receivedAt: str | None = None
    lastUpdatedAt: str | None = None

    def customer_recipient(self) -> Participant | None:
        for participant in self.recipientParticipants or ():
            if participant.participantType == "CUSTOMER":
                return participant
        return None


class ParticipantEvent(EventData):
    eventType: Literal["PARTICIPANT_ADDED", "PARTICIPANT_DISCONNECTED"]
    engagementId: str
    dialogId: str
    accountId: str
    channelId: str | None = None
    channelProviderId: str
    sessionId: str | None = None
    connectionId: str
    participantId: str | None = None
    displayName: str | None = None
    participantType: str | None = None
    providerDialogId: str | None = None
    providerParticipantId: str | None = None


class TypingEvent(EventData):
    eventType: Literal["TYPING"]
    dialogId: str
    engagementId: str
    accountId: str
    providerDialogId: str | None = None
    channelProviderId: str
    senderParticipantId: str
    senderParticipantType: str
    senderParticipantDisplayName: str
    channelId: str
    businessAccountName: str | None = None
    sourceType: str | None = None
    sourceAddress: str | None = None
    externalRecipientParticipants: list[ExternalRecipientParticipant] | None = None


class EngagementCreatedEvent(EventData):
    eventType: Literal["ENGAGEMENT_CREATED"]
    engagementId: str
    dialogId: str
    accountId: str
    conversation: str | None = None
    channelProviderId: str
    businessAccountName: str | None = None
    initiatorParticipantId: str
    sessionId: str | None = None
    customerIdentifiers: dict[str, list[str]] | None = None
    engagementParameters: dict[str, str] | None = None
    providerDialogId: str | None = None
    sourceAddress: str | None = None
    sourceType: str | None = None


class EngagementErrorEvent(EventData):
    eventType: Literal["ENGAGEMENT_ERROR"]
    type: str
    title: str
    detail: str | None = None
    engagementId: str | None = None
    dialogId: str | None = None
    sessionId: str | None = None
    providerDialogId: str | None = None
    channelProviderId: str
    channelId: str | None = None
    accountId: str | None = None


class UnknownEvent(Inbound):
    """An eventType this version does not know (subscriptions of type ALL receive new ones)."""

    eventType: str
    correlationId: str | None = None
    eventDate: str | None = None
    accountId: str | None = None


AxpCallbackEvent = (
    MessageEvent
    | ParticipantEvent
    | TypingEvent
    | EngagementCreatedEvent
    | EngagementErrorEvent
    | UnknownEvent
)

_KNOWN_EVENTS: dict[str, type[EventData]] = {
    "MESSAGES": MessageEvent,
    "PARTICIPANT_ADDED": ParticipantEvent,
    "PARTICIPANT_DISCONNECTED": ParticipantEvent,
    "TYPING": TypingEvent,
    "ENGAGEMENT_CREATED": EngagementCreatedEvent,
    "ENGAGEMENT_ERROR": EngagementErrorEvent,
}
_ENVELOPE = TypeAdapter(UnknownEvent)


def parse_callback_event(data: Any) -> AxpCallbackEvent:
    """The typed event for a decoded callback body; raises pydantic.ValidationError if invalid."""
    envelope = _ENVELOPE.validate_python(data)
    model = _KNOWN_EVENTS.get(envelope.eventType)
    if model is None:
        return envelope
    return model.model_validate(data)  # type: ignore[return-value]


def canonical_sha256(data: Any) -> str:
    """sha256 of the body with sorted keys and no whitespace: equal JSON, equal hash."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def dedupe_key(event: AxpCallbackEvent, data: dict[str, Any]) -> str:
    """MESSAGES: messageId + status (a status change is a new event); else a body hash.

    correlationId takes no part: it is optional, and when present it is inside the hash.
    A re-sent event is the same JSON, so the hash identifies it with or without one.
    """
    if isinstance(event, MessageEvent) and event.messageId:
        key = f"MESSAGES:{event.messageId}:{event.status}"
        if len(key) <= 255:
            return key
    return f"sha256:{canonical_sha256(data)}"
