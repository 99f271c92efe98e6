"""The mappings' batch operations: conversations opened many at a time in the accept
transaction, and the writes delivery handlers hand to the relay (several rows per batch,
as the worker applies them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from channel_bridge.db.models import Channel, Conversation, MessageLink
from channel_bridge.mappings.bookkeeping import CONVERSATION_ACTIVITY, LINK_SENT
from channel_bridge.mappings.conversations import ConversationKey, ConversationService
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.inbox import Inbox

T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def _keys(channel: Channel, *customers: str) -> list[ConversationKey]:
    return [ConversationKey(channel.id, channel.nexus_channel_id, c) for c in customers]


async def _conversations(sessionmaker) -> list[Conversation]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(Conversation).order_by(Conversation.id))
        return list(rows)


async def test_open_many_opens_each_once_and_a_closed_one_as_the_next_generation(
    sessionmaker, channel
) -> None:
    service = ConversationService(now=lambda: T0)
    keys = _keys(channel, "+15550000001", "+15550000002", "+15550000003")
    async with sessionmaker() as session, session.begin():
        opened = await service.open_many(session, keys)
    assert set(opened) == set(keys)
    assert {c.provider_dialog_id for c in opened.values()} == {
        f"{k.customer_address}_+15559870000_1" for k in keys
    }
    async with sessionmaker() as session, session.begin():
        again = await service.open_many(session, keys)
        first = await session.get(Conversation, opened[keys[0]].id)
        assert first is not None
        await service.close(session, first, reason="CUSTOMER disconnected in AXP")
    assert again == opened
    async with sessionmaker() as session, session.begin():
        after_close = await service.open_many(session, keys)
        found = await service.find_open_many(session, keys)
    assert after_close[keys[0]].provider_dialog_id == "+15550000001_+15559870000_2"
    assert after_close[keys[1]] == opened[keys[1]]
    assert found == after_close
    assert [
        (c.customer_address, c.generation, c.state) for c in await _conversations(sessionmaker)
    ] == [
        ("+15550000001", 1, "closed"),
        ("+15550000002", 1, "open"),
        ("+15550000003", 1, "open"),
        ("+15550000001", 2, "open"),
    ]


async def test_conversation_activity_writes_many_rows_and_never_moves_backwards(
    sessionmaker, channel
) -> None:
    keys = _keys(channel, "+15550000001", "+15550000002", "+15550000003")
    async with sessionmaker() as session, session.begin():
        opened = await ConversationService(now=lambda: T0).open_many(session, keys)
    ids = [opened[key].id for key in keys]
    rows = [
        {
            "conversation_id": ids[0],
            "engagement_id": "eng-1",
            "dialog_id": "dlg-1",
            "at": T0 + timedelta(seconds=5),
        },
        {
            "conversation_id": ids[1],
            "engagement_id": None,
            "dialog_id": None,
            "at": T0 - timedelta(seconds=5),
        },
        {
            "conversation_id": ids[2],
            "engagement_id": "eng-3",
            "dialog_id": None,
            "at": T0 + timedelta(seconds=9),
        },
    ]
    async with sessionmaker() as session, session.begin():
        await CONVERSATION_ACTIVITY.write(session, rows)
    got = {c.id: c for c in await _conversations(sessionmaker)}
    assert (got[ids[0]].axp_engagement_id, got[ids[0]].axp_dialog_id) == ("eng-1", "dlg-1")
    assert got[ids[0]].last_activity_at == T0 + timedelta(seconds=5)
    assert got[ids[1]].last_activity_at == T0  # an older moment never moves it back
    assert (got[ids[2]].axp_engagement_id, got[ids[2]].axp_dialog_id) == ("eng-3", None)


async def test_link_sent_writes_many_rows_and_statuses_only_move_forward(
    sessionmaker, channel
) -> None:
    # Links point at deliveries (a foreign key): queue three to point at.
    acceptance = await Inbox(sessionmaker).accept(
        source="test",
        external_id="evt",
        payload={},
        deliveries=[DeliveryRequest("test.sink", {"n": n}) for n in range(3)],
    )
    first, second, third = acceptance.delivery_ids
    async with sessionmaker() as session, session.begin():
        for delivery_id, status in ((first, "pending"), (second, "pending"), (third, "read")):
            session.add(
                MessageLink(
                    direction="nexus_to_axp",
                    ack_id=f"nx-{delivery_id}",
                    status=status,
                    delivery_id=delivery_id,
                )
            )
    async with sessionmaker() as session, session.begin():
        await LINK_SENT.write(
            session,
            [
                {"delivery_id": first, "axp_message_id": "axp-1", "at": T0},
                {"delivery_id": second, "nexus_message_id": "nx-remote-2", "at": T0},
                {"delivery_id": third, "axp_message_id": "axp-3", "at": T0},
            ],
        )
    async with sessionmaker() as session:
        got = {link.delivery_id: link for link in await session.scalars(select(MessageLink))}
    assert (got[first].status, got[first].axp_message_id) == ("sent", "axp-1")
    assert got[first].status_updated_at == T0
    assert (got[second].status, got[second].nexus_message_id) == ("sent", "nx-remote-2")
    # A link that is already past `sent` keeps its status; the id is still recorded.
    assert (got[third].status, got[third].axp_message_id) == ("read", "axp-3")


async def test_rows_for_the_same_conversation_in_one_batch_apply_as_if_one_after_another(
    sessionmaker, channel
) -> None:
    # PostgreSQL writes a batch as one UPDATE ... FROM unnest, which joins each row once: the
    # rows for one conversation are merged first, to what applying them in order leaves.
    keys = _keys(channel, "+15550000001")
    async with sessionmaker() as session, session.begin():
        opened = await ConversationService(now=lambda: T0).open_many(session, keys)
    conversation_id = opened[keys[0]].id
    rows = [
        {
            "conversation_id": conversation_id,
            "engagement_id": "eng-1",
            "dialog_id": "dlg-1",
            "at": T0 + timedelta(seconds=5),
        },
        {
            "conversation_id": conversation_id,
            "engagement_id": None,
            "dialog_id": "dlg-2",
            "at": T0 + timedelta(seconds=3),
        },
        {
            "conversation_id": conversation_id,
            "engagement_id": "eng-3",
            "dialog_id": None,
            "at": T0 + timedelta(seconds=4),
        },
    ]
    async with sessionmaker() as session, session.begin():
        await CONVERSATION_ACTIVITY.write(session, rows)
    (got,) = await _conversations(sessionmaker)
    assert (got.axp_engagement_id, got.axp_dialog_id) == ("eng-3", "dlg-2")
    assert got.last_activity_at == T0 + timedelta(seconds=5)


async def test_link_sent_rows_for_one_delivery_keep_the_last_ids_given(
    sessionmaker, channel
) -> None:
    acceptance = await Inbox(sessionmaker).accept(
        source="test",
        external_id="evt",
        payload={},
        deliveries=[DeliveryRequest("test.sink", {"n": 0})],
    )
    (delivery_id,) = acceptance.delivery_ids
    async with sessionmaker() as session, session.begin():
        session.add(MessageLink(direction="nexus_to_axp", ack_id="nx-1", delivery_id=delivery_id))
    async with sessionmaker() as session, session.begin():
        await LINK_SENT.write(
            session,
            [
                {"delivery_id": delivery_id, "axp_message_id": "axp-1", "at": T0},
                {
                    "delivery_id": delivery_id,
                    "nexus_message_id": "nx-remote",
                    "at": T0 + timedelta(seconds=1),
                },
            ],
        )
    async with sessionmaker() as session:
        (link,) = await session.scalars(select(MessageLink))
    assert (link.status, link.axp_message_id, link.nexus_message_id) == (
        "sent",
        "axp-1",
        "nx-remote",
    )
    assert link.status_updated_at == T0  # the moment it moved to `sent`
