"""The relay's tables as SQLAlchemy Core tables, and the statuses its queries group."""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    Table,
)

from channel_bridge.db.models import Attempt, CircuitState, Delivery, DeliveryStatus, InboxEvent

inbox_table = cast(Table, InboxEvent.__table__)
circuit_table = cast(Table, CircuitState.__table__)
delivery_table = cast(Table, Delivery.__table__)
attempt_table = cast(Table, Attempt.__table__)

# Statuses that hold back later deliveries of the same partition (head-of-line order).
BLOCKING_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.IN_FLIGHT)
# Statuses the retention task may delete once old enough; dead ones wait for an operator.
FINISHED_STATUSES = (DeliveryStatus.DELIVERED, DeliveryStatus.CANCELLED)
# An inbox event whose body retention removed: only its dedupe key and ack are left.
TOMBSTONE_STATUS = "expired"
