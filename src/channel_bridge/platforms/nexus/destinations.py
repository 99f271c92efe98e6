"""The names of Nexus's destinations: what the relay's `deliveries.destination` holds."""

from __future__ import annotations

from enum import StrEnum


class NexusDestination(StrEnum):
    SEND_MESSAGE = "nexus.send_message"  # an agent message, to the customer
    RECEIPT = "nexus.receipt"  # a customer message's status (delivered, read, failed)
    TYPING = "nexus.typing"  # the agent is typing
