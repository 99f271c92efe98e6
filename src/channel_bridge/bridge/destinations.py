"""The names of the destinations that write only the bridge's own state."""

from __future__ import annotations

from enum import StrEnum


class BridgeDestination(StrEnum):
    CONVERSATION_EVENT = "bridge.conversation_event"  # an AXP event changes a conversation
    NEXUS_RECEIPT = "bridge.nexus_receipt"  # a Genesys receipt updates the message link
