"""The bridge's tables. Repositories (never routes) read and write them.

integrations    AXP messaging integrations (lifecycle callback or admin), mirrored to Akixi
channels        a Nexus channel (or Genesys Cloud Open Messaging integration) <-> an AXP
                integration/channel provider, with encrypted secrets
conversations   (channel, customer) <-> providerDialogId and AXP engagement/dialog ids
inbox_events    every accepted webhook, deduplicated by UNIQUE(source, external_id)
deliveries      the outbox: one row per outbound call, leased by workers
attempts        one row per try of a delivery
circuits        the shared state of each upstream's circuit breaker (open, paused, probing)
message_links   a message's ids on both platforms, so a status on one side finds the other
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from channel_bridge.db.base import Base, BigId, JsonDoc, UTCDateTime, utcnow

# Deliveries that hold back later ones of their partition (relay/repository/tables.py).
OPEN_DELIVERY_CONDITION = "status IN ('pending', 'in_flight')"
PENDING_CONDITION = "status = 'pending'"
IN_FLIGHT_CONDITION = "status = 'in_flight'"
DEAD_UNSKIPPED_CONDITION = "status = 'dead' AND NOT skipped"


# The Genesys backend of a channel (`channels.backend`).
CHANNEL_BACKEND_NEXUS = "nexus"
CHANNEL_BACKEND_GENESYS_CLOUD = "genesys-cloud"
CHANNEL_BACKENDS = (CHANNEL_BACKEND_NEXUS, CHANNEL_BACKEND_GENESYS_CLOUD)


class DeliveryStatus(StrEnum):
    """A delivery's state (`deliveries.status`); the values are what the column holds."""

    PENDING = "pending"  # waiting for next_attempt_at (and for earlier ones of its partition)
    IN_FLIGHT = "in_flight"  # leased to a worker until locked_until
    DELIVERED = "delivered"
    DEAD = "dead"  # a permanent error or the retry budget spent: waits for an operator
    CANCELLED = "cancelled"


class LinkDirection(StrEnum):
    """Which way a linked message went (`message_links.direction`)."""

    NEXUS_TO_AXP = "nexus_to_axp"  # a customer message, Genesys -> AXP
    AXP_TO_NEXUS = "axp_to_nexus"  # an agent message, AXP -> Genesys


class Integration(Base):
    __tablename__ = "integrations"

    # AXP businessAccountName: 3-256 characters (custom-messaging spec v1.0.4).
    integration_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    account_id: Mapped[str | None] = mapped_column(String(64))
    channel_provider_id: Mapped[str | None] = mapped_column(String(256), index=True)
    # active | deleted
    status: Mapped[str] = mapped_column(String(16), default="active")
    # callback | admin | cli: who last changed it
    source: Mapped[str] = mapped_column(String(16), default="admin")
    raw: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    akixi_unique_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    nexus_channel_id: Mapped[str] = mapped_column(String(128), unique=True)
    axp_account_id: Mapped[str] = mapped_column(String(64))
    axp_channel_provider_id: Mapped[str] = mapped_column(String(256))
    axp_integration_id: Mapped[str] = mapped_column(
        String(256), ForeignKey("integrations.integration_id", ondelete="RESTRICT"), index=True
    )
    axp_channel_id: Mapped[str] = mapped_column(String(64), default="Messaging")
    # nexus | genesys-cloud. For genesys-cloud, nexus_channel_id holds the Open Messaging
    # integration id (the id in its webhook URL).
    backend: Mapped[str] = mapped_column(
        String(32), default=CHANNEL_BACKEND_NEXUS, server_default=CHANNEL_BACKEND_NEXUS
    )
    customer_identifier_key: Mapped[str] = mapped_column(String(64), default="phoneNumbers")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Fernet tokens. The webhook secret is a JSON list so a rotation can overlap.
    webhook_secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    api_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("channel_id", "customer_address", "generation"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # No index of its own: the unique key leads with it (and one on channel_id alone led the
    # planner to filter every conversation of a channel to find one customer's).
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    customer_address: Mapped[str] = mapped_column(String(255))
    # A closed conversation is never reopened: the next message starts generation + 1.
    generation: Mapped[int] = mapped_column(Integer, default=1)
    provider_dialog_id: Mapped[str] = mapped_column(String(255), unique=True)
    axp_engagement_id: Mapped[str | None] = mapped_column(String(128), index=True)
    axp_dialog_id: Mapped[str | None] = mapped_column(String(128))
    # open | closed
    state: Mapped[str] = mapped_column(String(16), default="open")
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Why it closed (e.g. the AXP participant disconnect), for operators.
    closed_reason: Mapped[str | None] = mapped_column(Text)


class InboxEvent(Base):
    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_inbox_events_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # e.g. nexus.webhook, axp.notification, axp.integration
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    # What kind of event inside the source (e.g. MESSAGES): for filtering and metrics.
    kind: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    # The exact bytes received (text), kept so real payloads can become fixtures.
    raw_body: Mapped[str | None] = mapped_column(Text)
    # The answer given to the sender; a duplicate gets exactly this answer again.
    ack: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    # received | handled | ignored | needs_review | resolved | dismissed; expired once retention
    # stripped the body (a dedupe tombstone)
    status: Mapped[str] = mapped_column(String(16), default="received")
    note: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        # The claim's candidates and expired leases: partial, so they hold only pending (or
        # in-flight) rows and every plan stops at the claim's LIMIT, even with statistics
        # from before a burst (migration 3f8a2c6d1e47).
        Index(
            "ix_deliveries_due",
            "destination",
            "next_attempt_at",
            postgresql_where=text(PENDING_CONDITION),
            sqlite_where=text(PENDING_CONDITION),
        ),
        Index(
            "ix_deliveries_leases",
            "locked_until",
            postgresql_where=text(IN_FLIGHT_CONDITION),
            sqlite_where=text(IN_FLIGHT_CONDITION),
        ),
        Index("ix_deliveries_partition", "partition_key", "sequence"),
        # The claim's head-of-line test ("anything earlier still open in this partition?")
        # reads only open rows. Without this index PostgreSQL, with statistics lagging a
        # churning outbox, intersected every open row per candidate: 200 ms per claim on a
        # 4,000-delivery backlog. Partial, so it stays as small as the open outbox.
        Index(
            "ix_deliveries_open_partition",
            "partition_key",
            "sequence",
            "id",
            postgresql_where=text(OPEN_DELIVERY_CONDITION),
            sqlite_where=text(OPEN_DELIVERY_CONDITION),
        ),
        # The claim flags the dead deliveries a claimed later one passes over. Dead rows are a
        # handful among months of delivered ones; without an index of their own the planner,
        # counting none, scanned the whole table on every claim (migration 6e2f9b4c8a17).
        Index(
            "ix_deliveries_dead_unskipped",
            "partition_key",
            "sequence",
            postgresql_where=text(DEAD_UNSKIPPED_CONDITION),
            sqlite_where=text(DEAD_UNSKIPPED_CONDITION),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    inbox_event_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbox_events.id", ondelete="SET NULL"), index=True
    )
    destination: Mapped[str] = mapped_column(String(64))
    # The conversation (or other ordering scope); NULL when order does not matter.
    partition_key: Mapped[str | None] = mapped_column(String(255))
    # Order within a partition: deliveries are attempted in ascending (sequence, id).
    sequence: Mapped[int] = mapped_column(BigId, default=0)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_by: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    # Set when a dead delivery was passed over so its partition could move on.
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Attempt(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    duration_ms: Mapped[float | None] = mapped_column()
    # delivered | retry | dead | auth_retry
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_class: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    # At most 2 KB, secrets masked.
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class CircuitState(Base):
    """One upstream's circuit breaker, shared by every worker (relay/circuits.py)."""

    __tablename__ = "circuits"

    # e.g. axp:https://na.api.avayacloud.com:ABCDEF (the upstream and the account on it)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # closed | open
    state: Mapped[str] = mapped_column(String(16), default="closed")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # While open: when the next single probe may go, and the interval after that one.
    next_probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    probe_interval_s: Mapped[float] = mapped_column(default=1.0)
    # Retry-After or 429: nothing is sent to this upstream before this moment.
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MessageLink(Base):
    __tablename__ = "message_links"
    __table_args__ = (
        Index("ix_message_links_nexus_message_id", "nexus_message_id"),
        Index("ix_message_links_axp_message_id", "axp_message_id"),
        Index("ix_message_links_ack_id", "ack_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    # nexus_to_axp | axp_to_nexus
    direction: Mapped[str] = mapped_column(String(16))
    # The id we answered Nexus with (nexus_to_axp): Nexus correlates its receipts by it.
    ack_id: Mapped[str | None] = mapped_column(String(128))
    nexus_message_id: Mapped[str | None] = mapped_column(String(255))
    axp_message_id: Mapped[str | None] = mapped_column(String(128))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    # Last known status on the receiving side: pending, sent, delivered, read, failed.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_detail: Mapped[str | None] = mapped_column(Text)
    status_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
