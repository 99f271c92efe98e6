"""Open Messaging wire models, field for field (docs/genesys-cloud-contract.md says which
fields were read in the Genesys Cloud docs and which are inferred).

Genesys -> bridge: the outbound webhook body, `OpenNormalizedMessage` (`type` Text, Receipt
or Event). Bridge -> Genesys: the inbound message, event (typing) and receipt bodies, and the
integration that `provision` creates. Unknown fields are kept (`extra="allow"`): Genesys adds
fields to the normalized format over time and a new one must not refuse a webhook.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MessageType = Literal["Text", "Receipt", "Event", "Structured"]
# (read) the two statuses the inbound receipt endpoint takes.
InboundReceiptStatus = Literal["Delivered", "Failed"]
# (read, the secret token field) "> 15 characters"; also what `provision` generates.
MIN_SIGNATURE_SECRET_LENGTH = 16


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Party(_Wire):
    """`channel.to` / `channel.from`: who sent or receives the message."""

    id: str | None = None
    # Email | Phone | Opaque ... (read in examples); Opaque is what we send.
    idType: str | None = None
    nickname: str | None = None
    firstName: str | None = None
    lastName: str | None = None


class MessageChannel(_Wire):
    # The Open Messaging integration id (outbound); unset on what we send.
    id: str | None = None
    platform: str | None = None
    type: str | None = None
    messageId: str | None = None
    to: Party | None = None
    from_: Party | None = Field(default=None, alias="from")
    time: datetime | None = None


class Attachment(_Wire):
    # Image | Video | Audio | File ... (read field; values inferred)
    mediaType: str | None = None
    url: str | None = None
    mime: str | None = None
    filename: str | None = None


class Content(_Wire):
    contentType: str = "Attachment"
    attachment: Attachment | None = None


class Typing(_Wire):
    type: str = "On"
    # Milliseconds (read in the outbound Event example: 5000).
    duration: int | None = None


class MessageEvent(_Wire):
    eventType: str = "Typing"
    typing: Typing | None = None


class Reason(_Wire):
    code: str | None = None
    message: str | None = None


class OpenNormalizedMessage(_Wire):
    """The outbound webhook body: an agent's message, a receipt, or an event."""

    id: str
    channel: MessageChannel
    type: str
    text: str | None = None
    content: list[Content] = Field(default_factory=list)
    events: list[MessageEvent] = Field(default_factory=list)
    direction: str | None = None
    # Receipts only.
    status: str | None = None
    reasons: list[Reason] | None = None
    isFinalReceipt: bool | None = None

    @property
    def attachments(self) -> list[Attachment]:
        return [
            item.attachment
            for item in self.content
            if item.contentType == "Attachment"
            and item.attachment is not None
            and item.attachment.url
        ]

    @property
    def is_typing(self) -> bool:
        return self.type == "Event" and any(
            event.eventType == "Typing" and event.typing is not None for event in self.events
        )

    @property
    def customer_id(self) -> str | None:
        """The external user an outbound message is addressed to."""
        return self.channel.to.id if self.channel.to is not None else None


# --- bridge -> Genesys --------------------------------------------------------------------


class InboundChannel(_Wire):
    messageId: str | None = None
    from_: Party | None = Field(default=None, alias="from")
    to: Party | None = None
    time: datetime


class InboundMessage(_Wire):
    """`POST /api/v2/conversations/messages/{integrationId}/inbound/open/message`."""

    channel: InboundChannel
    text: str | None = None
    content: list[Content] | None = None


class InboundEvent(_Wire):
    """`POST …/inbound/open/event`: the customer is typing."""

    channel: InboundChannel
    events: list[MessageEvent]


class ReceiptChannel(_Wire):
    to: Party
    time: datetime


class InboundReceipt(_Wire):
    """`POST …/inbound/open/receipt`: what became of an agent message (Delivered, Failed)."""

    id: str
    channel: ReceiptChannel
    status: InboundReceiptStatus
    direction: Literal["Outbound"] = "Outbound"
    isFinalReceipt: bool = True
    reasons: list[Reason] | None = None


class IntegrationRequest(_Wire):
    """`POST /api/v2/conversations/messaging/integrations/open`."""

    name: str
    outboundNotificationWebhookUrl: str
    outboundNotificationWebhookSignatureSecretToken: str = Field(
        min_length=MIN_SIGNATURE_SECRET_LENGTH
    )
    webhookHeaders: dict[str, str] | None = None


class IntegrationUpdate(_Wire):
    """`PATCH /api/v2/conversations/messaging/integrations/open/{integrationId}`
    (OpenIntegrationUpdateRequest; the SDK models mark `name` required)."""

    name: str
    outboundNotificationWebhookUrl: str | None = None


class IntegrationResponse(_Wire):
    id: str
    name: str | None = None
    outboundNotificationWebhookUrl: str | None = None
    status: str | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    """The JSON body of a request model: wire names, no unset optional fields."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def media_type_for(mime: str | None) -> str:
    """An attachment's `mediaType` from its MIME type: Image, Video, Audio, else File."""
    major = (mime or "").split("/", 1)[0].lower()
    return major.capitalize() if major in ("image", "video", "audio") else "File"


def customer(address: str) -> Party:
    """The customer as Genesys sees them: an opaque id that is their address on the other side."""
    return Party(id=address, idType="Opaque", nickname=address)
