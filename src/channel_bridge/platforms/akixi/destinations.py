"""The names of Akixi's destinations: what the relay's `deliveries.destination` holds."""

from __future__ import annotations

from enum import StrEnum


class AkixiDestination(StrEnum):
    UPSERT = "akixi.upsert"  # mirror an integration into Omnichannel
    DELETE = "akixi.delete"  # remove its mirror
