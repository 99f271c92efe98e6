"""Relay partition keys: one per conversation and direction, one per mirrored integration.

Each direction has its own partition so an outage on one side never holds up messages
travelling the other way; within a direction a conversation's messages keep their order.
"""

from __future__ import annotations


def nexus_to_axp(nexus_channel_id: str, customer_address: str) -> str:
    return f"n2a:{nexus_channel_id}:{customer_address}"


def axp_to_nexus(conversation_key: str) -> str:
    return f"a2n:{conversation_key}"


def akixi(integration_id: str) -> str:
    """Akixi mirror calls for one integration are delivered in order."""
    return f"akixi:{integration_id}"


def axp_subscription(channel_provider_id: str) -> str:
    return f"axp.subscription:{channel_provider_id}"
