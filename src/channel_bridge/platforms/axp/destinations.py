"""The names of AXP's destinations: what the relay's `deliveries.destination` holds."""

from __future__ import annotations

from enum import StrEnum


class AxpDestination(StrEnum):
    SEND_MESSAGE = "axp.send_message"  # a customer message, to the agent
    TYPING = "axp.typing"  # the customer is typing
    SUBSCRIPTION_ENSURE = "axp.subscription.ensure"  # our notification callback subscription
