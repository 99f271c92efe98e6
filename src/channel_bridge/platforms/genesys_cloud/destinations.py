"""The names of Genesys Cloud's destinations: what the relay's `deliveries.destination` holds."""

from __future__ import annotations

from enum import StrEnum


class GenesysCloudDestination(StrEnum):
    SEND_MESSAGE = "genesys_cloud.send_message"  # an agent message, to the customer
    RECEIPT = "genesys_cloud.receipt"  # a customer message's status, or a dead send's Failed
    TYPING = "genesys_cloud.typing"  # an AXP agent typing, to the customer
