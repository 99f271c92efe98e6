"""What each console page shows, built from the same services as the admin API (no SQL here)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.bridge import partitions
from channel_bridge.db.base import utcnow
from channel_bridge.db.models import (
    Attempt,
    Conversation,
    Delivery,
    InboxEvent,
    LinkDirection,
    MessageLink,
)
from channel_bridge.errors import NotFound
from channel_bridge.mappings.conversations import ConversationService, dialog_id_part
from channel_bridge.ops.logging import redact_document, redact_text
from channel_bridge.relay import service as relay

# A delivery's request excerpt: enough to recognise the message, never a whole media document.
EXCERPT_CHARS = 2000
CHART_WINDOW = timedelta(hours=1)
CHART_BUCKET = timedelta(minutes=1)


def _like_literal(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def channel_partition_patterns(nexus_channel_id: str) -> list[str]:
    """LIKE patterns of the partitions of every conversation on this channel, both ways.

    Nexus -> AXP partitions name the channel; AXP -> Nexus ones name the providerDialogId,
    `<customer>_<channel>_<generation>`, whose parts never contain `_`.
    """
    n2a = _like_literal(partitions.nexus_to_axp(nexus_channel_id, ""))
    a2n = _like_literal(partitions.axp_to_nexus(""))
    return [f"{n2a}%", f"{a2n}%\\_{_like_literal(dialog_id_part(nexus_channel_id))}\\_%"]


def conversation_partition_keys(conversation: Conversation, nexus_channel_id: str) -> list[str]:
    """The partitions a conversation's deliveries are queued in, both directions."""
    keys = [
        partitions.nexus_to_axp(nexus_channel_id, conversation.customer_address),
        partitions.axp_to_nexus(conversation.provider_dialog_id),
    ]
    if conversation.axp_engagement_id:
        keys.append(partitions.axp_to_nexus(conversation.axp_engagement_id))
    return keys


def excerpt(document: Any) -> str:
    """A redacted, pretty-printed excerpt of a stored JSON document."""
    text = json.dumps(redact_document(document), indent=2, sort_keys=True, default=str)
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "\n…"


def safe_text(text: str | None) -> str | None:
    return redact_text(text) if text else text


def message_text(payload: dict[str, Any] | None) -> str | None:
    """The words of a relayed message, whichever way it went."""
    if not payload:
        return None
    if isinstance(payload.get("text"), str):
        return safe_text(payload["text"])
    event = payload.get("event")
    if isinstance(event, dict):
        body = event.get("body")
        if isinstance(body, dict):
            element = body.get("elementText")
            if isinstance(element, dict) and isinstance(element.get("text"), str):
                return safe_text(element["text"])
    return None


# --- deliveries ---------------------------------------------------------------------------


@dataclass
class DeliveryFilters:
    status: str | None = None
    destination: str | None = None
    channel: str | None = None
    conversation: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None

    def query(self, **changes: Any) -> dict[str, str]:
        """The filters as query parameters (for links to other pages of the same list)."""
        values = {
            "status": self.status,
            "destination": self.destination,
            "channel": self.channel,
            "conversation": self.conversation,
            "since": self.since.strftime("%Y-%m-%dT%H:%M") if self.since else None,
            "until": self.until.strftime("%Y-%m-%dT%H:%M") if self.until else None,
            "cursor": self.cursor,
        }
        values.update(changes)
        return {key: str(value) for key, value in values.items() if value not in (None, "")}


async def deliveries_page(
    session: AsyncSession, filters: DeliveryFilters, *, limit: int = 50
) -> relay.DeliveryPage:
    """One page of deliveries for the console's filters."""
    keys: list[str] | None = None
    patterns: list[str] | None = None
    if filters.conversation is not None:
        conversation, nexus_channel_id = await conversation_with_channel(
            session, filters.conversation
        )
        keys = conversation_partition_keys(conversation, nexus_channel_id)
    if filters.channel:
        patterns = channel_partition_patterns(filters.channel)
        if keys is not None:
            # Both filters: the conversation's keys, if it is on that channel at all.
            keys = keys if nexus_channel_id == filters.channel else []
            patterns = None
    return await relay.list_deliveries(
        session,
        status=filters.status,
        destination=filters.destination,
        partition_keys=keys,
        partition_patterns=patterns,
        since=filters.since,
        until=filters.until,
        cursor=filters.cursor,
        limit=limit,
    )


@dataclass
class DeliveryView:
    delivery: Delivery
    attempts: list[Attempt]
    request_excerpt: str
    last_error: str | None


async def delivery_view(session: AsyncSession, delivery_id: int) -> DeliveryView:
    delivery, attempts = await relay.get_delivery(session, delivery_id)
    # Detached first: the masked values below are for display only, never written back.
    session.expunge_all()
    for attempt in attempts:
        attempt.error = safe_text(attempt.error)
        attempt.response_excerpt = safe_text(attempt.response_excerpt)
    return DeliveryView(
        delivery=delivery,
        attempts=attempts,
        request_excerpt=excerpt(delivery.payload),
        last_error=safe_text(delivery.last_error),
    )


# --- conversations ------------------------------------------------------------------------


async def conversation_with_channel(
    session: AsyncSession, conversation_id: int
) -> tuple[Conversation, str]:
    conversations = ConversationService()
    conversation = await conversations.get(session, conversation_id)
    if conversation is None:
        raise NotFound(f"Conversation {conversation_id} does not exist")
    [(found, nexus_channel_id)] = await conversations.find_many_with_channel(
        session, [conversation.provider_dialog_id]
    )
    return found, nexus_channel_id


@dataclass
class Hop:
    """One step of a message's way through the bridge."""

    name: str
    state: str  # done | waiting | failed | unknown
    at: datetime | None
    detail: str | None = None


@dataclass
class MessageTrace:
    link: MessageLink
    direction: str
    text: str | None
    delivery: Delivery | None
    hops: list[Hop]


@dataclass
class ConversationTrace:
    conversation: Conversation
    nexus_channel_id: str
    messages: list[MessageTrace]
    other_deliveries: list[Delivery] = field(default_factory=list)


_DELIVERY_STATE = {
    "delivered": "done",
    "pending": "waiting",
    "in_flight": "waiting",
    "dead": "failed",
    "cancelled": "failed",
}
_RECEIPT_STATE = {"delivered": "done", "read": "done", "failed": "failed"}


def _hops(link: MessageLink, delivery: Delivery | None, accepted: InboxEvent | None) -> list[Hop]:
    to_axp = link.direction == LinkDirection.NEXUS_TO_AXP
    first = "accepted from Nexus" if to_axp else "agent reply from AXP"
    hops = [
        Hop(
            first,
            "done",
            accepted.received_at if accepted else link.created_at,
            f"inbox event {accepted.id}" if accepted else None,
        )
    ]
    target = "delivered to AXP" if to_axp else "delivered to Nexus"
    if delivery is None:
        hops.append(Hop(target, "done" if link.status != "pending" else "unknown", None))
    else:
        state = _DELIVERY_STATE.get(delivery.status, "unknown")
        detail = f"delivery {delivery.id}: {delivery.status.replace('_', ' ')}"
        if delivery.attempt_count:
            detail += f" after {delivery.attempt_count} attempt(s)"
        if state != "done" and delivery.last_error:
            detail += f"; {safe_text(delivery.last_error)}"
        hops.append(Hop(target, state, delivery.delivered_at or delivery.updated_at, detail))
    receipt_from = "AXP" if to_axp else "Nexus"
    receipt = _RECEIPT_STATE.get(link.status)
    hops.append(
        Hop(
            f"receipt from {receipt_from}",
            receipt or "waiting",
            link.status_updated_at if receipt else None,
            safe_text(link.status_detail) if receipt else "none yet",
        )
    )
    return hops


async def conversation_trace(session: AsyncSession, conversation_id: int) -> ConversationTrace:
    """One conversation's messages both ways, in order, with each hop's status."""
    conversation, nexus_channel_id = await conversation_with_channel(session, conversation_id)
    links = await ConversationService().messages(session, conversation_id)
    deliveries = await relay.get_deliveries(
        session, [link.delivery_id for link in links if link.delivery_id is not None]
    )
    events = await relay.inbox_events(
        session, [d.inbox_event_id for d in deliveries.values() if d.inbox_event_id is not None]
    )
    messages = []
    for link in links:
        delivery = deliveries.get(link.delivery_id) if link.delivery_id else None
        accepted = (
            events.get(delivery.inbox_event_id) if delivery and delivery.inbox_event_id else None
        )
        messages.append(
            MessageTrace(
                link=link,
                direction="to AXP" if link.direction == LinkDirection.NEXUS_TO_AXP else "to Nexus",
                text=message_text(delivery.payload if delivery else None),
                delivery=delivery,
                hops=_hops(link, delivery, accepted),
            )
        )
    page = await relay.list_deliveries(
        session,
        partition_keys=conversation_partition_keys(conversation, nexus_channel_id),
        limit=relay.MAX_PAGE_SIZE,
    )
    linked = set(deliveries)
    others = sorted((d for d in page.items if d.id not in linked), key=lambda d: d.id)
    return ConversationTrace(conversation, nexus_channel_id, messages, others)


async def find_conversations(
    session: AsyncSession,
    *,
    customer: str | None,
    channel: str | None,
    provider_dialog_id: str | None,
) -> Sequence[tuple[Conversation, str]]:
    return await ConversationService().search(
        session,
        customer_address=customer or None,
        nexus_channel_id=channel or None,
        provider_dialog_id=provider_dialog_id or None,
        limit=50,
    )


# --- overview -----------------------------------------------------------------------------


@dataclass
class Chart:
    """A small bar chart as inline SVG geometry: one bar per bucket."""

    title: str
    bars: list[tuple[float, float, float, int]]  # x, y, height, value
    peak: float
    total: int
    unit: str
    width: int = 240
    height: int = 48


def chart(title: str, counts: list[int], *, per_second: bool) -> Chart:
    scale = CHART_BUCKET.total_seconds() if per_second else 1.0
    values = [count / scale for count in counts]
    peak = max(values, default=0.0)
    width, height = 240, 48
    bar = width / max(len(values), 1)
    bars = []
    for index, value in enumerate(values):
        h = 0.0 if peak == 0 else max(1.0, value / peak * height) if value else 0.0
        bars.append((round(index * bar, 2), round(height - h, 2), round(h, 2), counts[index]))
    return Chart(
        title=title,
        bars=bars,
        peak=round(peak, 2),
        total=sum(counts),
        unit="deliveries/s" if per_second else "dead letters per minute",
    )


@dataclass
class DestinationRow:
    activity: relay.DestinationActivity
    circuit: relay.CircuitStatus | None
    oldest_pending_age: timedelta | None
    delivered_chart: Chart
    dead_chart: Chart


async def overview(
    session: AsyncSession, *, destinations: Sequence[tuple[str, str | None]]
) -> list[DestinationRow]:
    """Per destination (name, circuit key): breaker, backlog, oldest pending, last error, charts."""
    now = utcnow()
    circuits = {status.key: status for status in await relay.circuit_statuses(session, now=now)}
    keys = dict(destinations)
    rows = []
    for activity in await relay.destination_activity(
        session,
        destinations=[name for name, _key in destinations],
        window=CHART_WINDOW,
        bucket=CHART_BUCKET,
        now=now,
    ):
        activity.last_error = safe_text(activity.last_error)
        oldest = activity.oldest_pending_at
        key = keys.get(activity.destination)
        rows.append(
            DestinationRow(
                activity=activity,
                circuit=circuits.get(key) if key else None,
                oldest_pending_age=(now - oldest.astimezone(UTC)) if oldest else None,
                delivered_chart=chart(
                    f"{activity.destination}: deliveries per second, last hour",
                    activity.delivered,
                    per_second=True,
                ),
                dead_chart=chart(
                    f"{activity.destination}: dead letters per minute, last hour",
                    activity.died,
                    per_second=False,
                ),
            )
        )
    return rows
