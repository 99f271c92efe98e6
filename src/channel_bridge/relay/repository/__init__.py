"""All SQL of the relay, one module per concern; SQLAlchemy Core on the hot paths.

`inbox` (inbox rows), `deliveries` (the outbox and its attempts), `circuits` (the breakers'
shared state), `tables`, `write_lock` (SQLite's single writer) and `sequence` (delivery
order). The relay imports these names from here.
"""

from channel_bridge.relay.repository.circuits import CircuitRepository
from channel_bridge.relay.repository.deliveries import (
    NOTIFY_CHANNEL,
    ClaimedDelivery,
    DeliveryRepository,
    OutcomeRow,
    delivery_row,
    make_pending_due,
)
from channel_bridge.relay.repository.inbox import InboxBatchWriter, InboxRepository
from channel_bridge.relay.repository.sequence import next_sequence
from channel_bridge.relay.repository.tables import (
    BLOCKING_STATUSES,
    FINISHED_STATUSES,
    TOMBSTONE_STATUS,
)
from channel_bridge.relay.repository.write_lock import write_turn

__all__ = [
    "BLOCKING_STATUSES",
    "FINISHED_STATUSES",
    "NOTIFY_CHANNEL",
    "TOMBSTONE_STATUS",
    "CircuitRepository",
    "ClaimedDelivery",
    "DeliveryRepository",
    "InboxBatchWriter",
    "InboxRepository",
    "OutcomeRow",
    "delivery_row",
    "make_pending_due",
    "next_sequence",
    "write_turn",
]
