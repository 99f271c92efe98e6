"""The payload of each bridge destination: one model each, stored as the delivery's JSON.

The accept transaction fills in what a delivery needs from the database (the conversation a
message belongs to, the link a status is about), so a handler builds its request from the
payload and the cached channel alone. Rows queued by a version that resolved these at send
time lack those fields; their handlers resolve them then (see `resolved`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from channel_bridge.platforms.axp.schemas import (
    EngagementCreatedEvent,
    EngagementErrorEvent,
    MessageEvent,
    ParticipantEvent,
)
from channel_bridge.platforms.nexus.schemas import MediaItem


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# --- Nexus -> AXP ---------------------------------------------------------------------------


class _FromNexus(Payload):
    """What every Nexus -> AXP delivery carries: the webhook it came from and the customer."""

    nexus_channel_id: str
    customer: str
    ack_id: str
    trace_id: str | None = None


class AxpSendPayload(_FromNexus):
    """`axp.send_message`: a Nexus message to send into AXP for the customer."""

    nexus_message_id: str | None = None
    business_address: str | None = None
    text: str | None = None
    media: list[MediaItem] = []
    timestamp: str | None = None
    # Opened in the accept transaction.
    conversation_id: int | None = None
    provider_dialog_id: str | None = None
    # The Genesys backend the message came from when it is not Nexus ("genesys-cloud"): a
    # send that goes dead is reported back to it as a Failed receipt.
    origin: str | None = None


class AxpTypingPayload(_FromNexus):
    """`axp.typing`: a Nexus typing indicator for the customer's open conversation."""

    # The open conversation found in the accept transaction; None when there was none.
    provider_dialog_id: str | None = None
    resolved: bool = False


class NexusReceiptRecord(Payload):
    """`bridge.nexus_receipt`: a Nexus receipt for a message we relayed from AXP."""

    nexus_channel_id: str
    receipt_for: str
    status: str | None = None


# --- AXP -> Nexus ---------------------------------------------------------------------------


class ConversationRef(Payload):
    """Where an AXP event goes on the Nexus side."""

    id: int
    provider_dialog_id: str
    nexus_channel_id: str
    customer_address: str


class _FromAxpEvent(Payload):
    """A payload built around an AXP event; older rows hold the bare event, read as `event`."""

    @model_validator(mode="before")
    @classmethod
    def _queued_as_bare_event(cls, data: Any) -> Any:
        if isinstance(data, dict) and "eventType" in data:
            return {"event": data}
        return data


class AgentMessagePayload(_FromAxpEvent):
    """`nexus.send_message`: an agent's (or bot's) AXP message for the customer on Nexus."""

    event: MessageEvent
    # The conversation found in the accept transaction (None: no conversation of ours).
    conversation: ConversationRef | None = None
    # False on rows queued before agent messages were resolved at accept.
    resolved: bool = False


class NexusReceiptPayload(_FromAxpEvent):
    """`nexus.receipt`: an AXP status on a customer message, as the receipt Nexus gets.

    The message link was found and moved forward in the accept transaction; `event` holds
    the AXP event of rows queued before that, which the handler resolves when delivered.
    """

    nexus_channel_id: str | None = None
    receipt_for: str | None = None
    status: str | None = None
    event: MessageEvent | None = None
    # For a Genesys Cloud channel: the message's id there and its conversation (the receipt
    # names the customer it was addressed to).
    remote_message_id: str | None = None
    conversation_id: int | None = None
    # Set when the bridge itself reports a failure (no AXP event behind it): who the message
    # was addressed to, and why it failed.
    customer_address: str | None = None
    failure_reason: str | None = None


class ConversationEventPayload(
    RootModel[
        Annotated[
            EngagementCreatedEvent | ParticipantEvent | EngagementErrorEvent,
            Field(discriminator="eventType"),
        ]
    ]
):
    """`bridge.conversation_event`: an AXP event that changes our conversation state."""
