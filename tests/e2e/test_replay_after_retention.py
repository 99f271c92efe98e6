"""A captured, validly signed Nexus webhook replayed long after it was relayed (issue: no
timestamp in the Nexus contract can refuse a stale message, so only remembered keys can)."""

from __future__ import annotations

from datetime import timedelta

from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Delivery, InboxEvent, MessageLink
from channel_bridge.relay.clock import ManualClock
from channel_bridge.relay.maintenance import purge_expired
from tests.e2e.conftest import Stack
from tests.e2e.test_bridge_e2e import delivered, nexus_message, settled
from tests.support.waiting import eventually

SEND = "axp.send_message"


async def test_a_replay_after_the_body_purge_gets_the_original_ack_and_sends_nothing(
    stack: Stack,
) -> None:
    message = nexus_message("Captured on the wire")
    first = await stack.nexus_webhook(message)
    assert first.status_code == 200
    ack_id = first.json()["messageId"]
    await eventually(lambda: delivered(stack, SEND), what="the first send delivered")
    await settled(stack)
    assert len(stack.sends()) == 1

    # Past every body and attempt retention, well inside the tombstone's.
    days = max(stack.settings.retention_inbox_days, stack.settings.retention_attempts_days) + 1
    counts = await purge_expired(
        stack.sessionmaker, stack.settings, clock=ManualClock(utcnow() + timedelta(days=days))
    )
    assert counts.inbox_events >= 1 and counts.tombstones == 0
    assert await stack.deliveries(Delivery.destination == SEND) == []
    [tombstone] = await stack.rows(InboxEvent, InboxEvent.ack == {"messageId": ack_id})
    assert (tombstone.payload, tombstone.raw_body, tombstone.status) == (None, None, "expired")

    replay = await stack.nexus_webhook(message)
    assert replay.status_code == 200
    assert replay.json() == {"messageId": ack_id}
    # accept commits before the 2xx: a replay that queued anything would show here already.
    assert await stack.deliveries(Delivery.destination == SEND) == []
    assert len(stack.sends()) == 1


async def test_a_replay_after_the_tombstone_expired_is_stopped_by_the_message_link(
    stack: Stack,
) -> None:
    message = nexus_message("Captured a year ago")
    first = await stack.nexus_webhook(message)
    ack_id = first.json()["messageId"]
    await eventually(lambda: delivered(stack, SEND), what="the first send delivered")
    await settled(stack)
    [sent_link] = await stack.links(MessageLink.ack_id == ack_id)
    assert sent_link.axp_message_id

    days = stack.settings.retention_tombstone_days + 1
    counts = await purge_expired(
        stack.sessionmaker, stack.settings, clock=ManualClock(utcnow() + timedelta(days=days))
    )
    assert counts.tombstones >= 1
    assert await stack.rows(InboxEvent, InboxEvent.ack == {"messageId": ack_id}) == []

    replay = await stack.nexus_webhook(message)
    assert replay.status_code == 200
    # The inbox no longer knows the key (a new event, a new ack), but the accept step finds the
    # sent link of this Nexus message id on the channel and queues no send.
    assert replay.json()["messageId"] != ack_id
    [event] = await stack.rows(InboxEvent, InboxEvent.ack == replay.json())
    assert await stack.deliveries(Delivery.inbox_event_id == event.id) == []
    assert await stack.links(MessageLink.ack_id == replay.json()["messageId"]) == []
    assert len(stack.sends()) == 1
