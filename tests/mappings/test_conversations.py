"""Conversations: open, reopen as generation + 1, concurrent first messages; message links."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from channel_bridge.db.models import Conversation
from channel_bridge.mappings.conversations import (
    PROVIDER_DIALOG_ID_MAX,
    ConversationService,
    provider_dialog_id,
)
from channel_bridge.mappings.repository import ConversationRepository, MessageLinkRepository

CUSTOMER = "+15551230000"


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


def test_provider_dialog_id_format() -> None:
    assert provider_dialog_id("+15559870000", "+15551230000", 1) == "+15551230000_+15559870000_1"
    assert (
        provider_dialog_id("sms-gw.eu", "alice@example.com", 12) == "alice@example.com_sms-gw.eu_12"
    )
    # Parts that could break the separator or AXP's ":typing" path are hashed, deterministically.
    odd = provider_dialog_id("gw:main", "whatsapp:+1555_0", 2)
    assert odd == provider_dialog_id("gw:main", "whatsapp:+1555_0", 2)
    customer_part, channel_part, generation = odd.split("_")
    assert customer_part.startswith("~") and len(customer_part) == 33
    assert channel_part.startswith("~") and generation == "2"
    assert ":" not in odd
    long_id = provider_dialog_id("c" * 128, "a" * 255, 99)
    assert 3 <= len(long_id) <= PROVIDER_DIALOG_ID_MAX
    assert long_id.endswith("_" + "c" * 128 + "_99")
    assert provider_dialog_id("c" * 128, "a" * 255, 99) != provider_dialog_id(
        "c" * 128, "a" * 254 + "b", 99
    )


async def test_get_or_open_creates_then_reuses(sessionmaker, channel) -> None:
    service = ConversationService()
    async with sessionmaker() as session:
        first = await service.get_or_open(session, channel, CUSTOMER)
        await session.commit()
    async with sessionmaker() as session:
        again = await service.get_or_open(session, channel, CUSTOMER)
        other = await service.get_or_open(session, channel, "+15551230001")
        await session.commit()
    assert again.id == first.id and first.generation == 1 and first.state == "open"
    assert first.provider_dialog_id == "+15551230000_+15559870000_1"
    assert other.id != first.id
    async with sessionmaker() as session:
        found = await service.find_by_provider_dialog_id(session, first.provider_dialog_id)
        open_one = await service.find_open_by_customer(session, channel.id, CUSTOMER)
    assert found is not None and found.id == first.id
    assert open_one is not None and open_one.id == first.id


async def test_close_then_next_message_opens_generation_two(sessionmaker, channel) -> None:
    clock = Clock()
    service = ConversationService(now=clock)
    async with sessionmaker() as session:
        first = await service.get_or_open(session, channel, CUSTOMER)
        clock.advance(60)
        assert await service.close(session, first, reason="PARTICIPANT_DISCONNECTED: customer left")
        assert not await service.close(session, first, reason="again")
        await session.commit()
    async with sessionmaker() as session:
        closed = await session.get(Conversation, first.id)
        assert closed is not None and closed.state == "closed"
        assert closed.closed_at == clock.moment and closed.closed_reason.startswith("PARTICIPANT")
        assert await service.find_open_by_customer(session, channel.id, CUSTOMER) is None
        second = await service.get_or_open(session, channel, CUSTOMER)
        await session.commit()
    assert second.id != first.id and second.generation == 2 and second.state == "open"
    assert second.provider_dialog_id == "+15551230000_+15559870000_2"
    async with sessionmaker() as session:
        old = await service.find_by_provider_dialog_id(session, first.provider_dialog_id)
    assert old is not None and old.state == "closed"  # a closed one is never reopened


async def test_concurrent_first_messages_open_one_conversation(sessionmaker, channel) -> None:
    service = ConversationService()

    async def first_message() -> int:
        async with sessionmaker() as session:
            conversation = await service.get_or_open(session, channel, CUSTOMER)
            await session.commit()
            return conversation.id

    ids = await asyncio.gather(*[first_message() for _ in range(12)])
    assert len(set(ids)) == 1
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 1


async def test_concurrent_messages_after_close_open_one_new_generation(
    sessionmaker, channel
) -> None:
    service = ConversationService()
    async with sessionmaker() as session:
        first = await service.get_or_open(session, channel, CUSTOMER)
        await service.close(session, first, reason="customer left")
        await session.commit()

    async def next_message() -> int:
        async with sessionmaker() as session:
            conversation = await service.get_or_open(session, channel, CUSTOMER)
            await session.commit()
            return conversation.generation

    assert set(await asyncio.gather(*[next_message() for _ in range(8)])) == {2}
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 2


async def test_record_axp_ids_and_touch(sessionmaker, channel) -> None:
    clock = Clock()
    service = ConversationService(now=clock)
    async with sessionmaker() as session:
        conversation = await service.get_or_open(session, channel, CUSTOMER)
        assert await service.record_axp_ids(
            session, conversation, engagement_id="eng-1", dialog_id="dlg-1"
        )
        assert not await service.record_axp_ids(
            session, conversation, engagement_id="eng-1", dialog_id=None
        )
        clock.advance(30)
        await service.touch(session, conversation)
        await service.touch(
            session, conversation, at=clock.moment - timedelta(hours=1)
        )  # never backwards
        await session.commit()
    async with sessionmaker() as session:
        stored = await session.get(Conversation, conversation.id)
    assert stored is not None
    assert (stored.axp_engagement_id, stored.axp_dialog_id) == ("eng-1", "dlg-1")
    assert stored.last_activity_at == clock.moment


async def test_message_links_find_and_status(sessionmaker, channel) -> None:
    async with sessionmaker() as session:
        conversation = await ConversationService().get_or_open(session, channel, CUSTOMER)
        links = MessageLinkRepository(session)
        outbound = await links.create(
            direction="nexus_to_axp",
            conversation_id=conversation.id,
            ack_id="ack-1",
            nexus_message_id="nx-1",
        )
        inbound = await links.create(
            direction="axp_to_nexus",
            conversation_id=conversation.id,
            axp_message_id="axp-9",
            nexus_message_id="nx-9",
        )
        outbound.axp_message_id = "axp-1"
        await session.commit()
    async with sessionmaker() as session:
        links = MessageLinkRepository(session)
        assert (await links.find_by_ack_id("ack-1")).id == outbound.id
        assert (await links.find_by_nexus_message_id("nx-1")).id == outbound.id
        assert (await links.find_by_nexus_message_id("nx-9", direction="nexus_to_axp")) is None
        assert (await links.find_by_axp_message_id("axp-9")).id == inbound.id
        assert (await links.find_by_axp_message_id("axp-1")).id == outbound.id
        assert await links.find_by_delivery_id(12345) is None
        link = await links.find_by_ack_id("ack-1")
        assert await links.update_status(link, "delivered", at=datetime(2026, 11, 24, tzinfo=UTC))
        assert await links.update_status(link, "read")
        assert not await links.update_status(link, "delivered")  # late receipt: no regression
        with pytest.raises(ValueError):
            await links.update_status(link, "bogus")
        await session.commit()
    async with sessionmaker() as session:
        stored = await MessageLinkRepository(session).find_by_ack_id("ack-1")
    assert stored is not None and stored.status == "read" and stored.status_updated_at is not None


async def test_lost_race_reads_the_winners_row(sessionmaker, channel, monkeypatch) -> None:
    """Deterministic version of the race: this caller saw no conversation, another then inserted."""
    service = ConversationService()
    async with sessionmaker() as session:
        winner = await service.get_or_open(session, channel, CUSTOMER)
        await session.commit()

    original = ConversationRepository.find_latest
    calls = {"n": 0}

    async def stale_first_read(self, channel_id, customer_address):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            return None  # what it saw before the winner committed
        return await original(self, channel_id, customer_address)

    monkeypatch.setattr(ConversationRepository, "find_latest", stale_first_read)
    async with sessionmaker() as session:
        loser = await service.get_or_open(session, channel, CUSTOMER)
        await session.commit()
    assert loser.id == winner.id and loser.generation == 1
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 1
