"""The accept transaction's lookups read one index entry per key, whatever the planner's
statistics say (PostgreSQL).

Both lookups run in every accepted Nexus batch (as one statement on PostgreSQL,
`latest_conversations_and_sent_messages`). Written as plain joins, statistics taken while
the tables were small or different from now made PostgreSQL read every conversation of the
channel (through its channel_id index, the customer as a filter) and every sent message link
(through the axp_message_id index), for every batch: a cost that grows with the tables. Each
test puts the statistics in such a state, runs the repository's lookup, and has PostgreSQL
EXPLAIN ANALYZE the very statement and parameters the driver was given.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, text

from channel_bridge.db.models import Channel, Conversation, MessageLink
from channel_bridge.mappings.repository import (
    ConversationRepository,
    MessageLinkRepository,
    latest_conversations_and_sent_messages,
    routes_and_linked_messages,
)
from tests.support.plans import rows_thrown_away

T0 = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
ROWS = 600


pytestmark = pytest.mark.usefixtures("postgres_planner")


async def _conversations(session: Any, channel: Channel, count: int) -> list[int]:
    rows = [
        {
            "channel_id": channel.id,
            "customer_address": f"+1555{n:07d}",
            "generation": 1,
            "provider_dialog_id": f"+1555{n:07d}_{channel.nexus_channel_id}_1",
            "state": "open",
            "last_activity_at": T0,
            "created_at": T0,
        }
        for n in range(count)
    ]
    result = await session.execute(insert(Conversation).returning(Conversation.id), rows)
    return list(result.scalars())


async def _nexus_links(session: Any, conversation_ids: list[int]) -> None:
    """A pending Nexus-to-AXP link per conversation, message ids nx-0, nx-1 …"""
    await session.execute(
        insert(MessageLink),
        [
            {
                "conversation_id": conversation_id,
                "direction": "nexus_to_axp",
                "nexus_message_id": f"nx-{n}",
                "status": "pending",
                "created_at": T0,
            }
            for n, conversation_id in enumerate(conversation_ids)
        ],
    )


async def _sent_after_analyze(session: Any) -> None:
    """Statistics from before AXP answered, then every link sent with an AXP message id."""
    await session.execute(text("ANALYZE message_links"))
    await session.execute(
        text("UPDATE message_links SET axp_message_id = 'axp-' || id, status = 'sent'")
    )


async def test_latest_conversations_are_found_by_their_customers_index(
    sessionmaker, channel, sent_statements
) -> None:
    async with sessionmaker() as session, session.begin():
        # Statistics of a channel with no conversations yet; then the channel grows.
        await session.execute(text("ANALYZE conversations"))
        await _conversations(session, channel, ROWS)
    keys = [(channel.id, "+15550000007"), (channel.id, "+15559999999")]
    async with sessionmaker() as session, session.begin():
        latest = await ConversationRepository(session).latest_for(keys)
        assert set(latest) == {(channel.id, "+15550000007")}
        statement, args = sent_statements[-1]
        assert await rows_thrown_away(session, statement, args) == 0


async def test_sent_links_are_found_by_their_message_ids_index(
    sessionmaker, channel, sent_statements
) -> None:
    async with sessionmaker() as session, session.begin():
        await _nexus_links(session, await _conversations(session, channel, ROWS))
    async with sessionmaker() as session, session.begin():
        # Statistics from before AXP answered: no link has an AXP message id.
        await _sent_after_analyze(session)
    keys = [(channel.id, "nx-7"), (channel.id, "nx-unknown"), (channel.id, "nx-9")]
    async with sessionmaker() as session, session.begin():
        sent = await MessageLinkRepository(session).sent_nexus_message_ids(
            keys, direction="nexus_to_axp"
        )
        assert sent == {(channel.id, "nx-7"), (channel.id, "nx-9")}
        statement, args = sent_statements[-1]
        assert await rows_thrown_away(session, statement, args) == 0


async def test_both_lookups_in_one_statement_keep_their_index_probes(
    sessionmaker, channel, sent_statements
) -> None:
    async with sessionmaker() as session, session.begin():
        # Both bad states at once: no conversations, then links without AXP ids.
        await session.execute(text("ANALYZE conversations"))
        await _nexus_links(session, await _conversations(session, channel, ROWS))
    async with sessionmaker() as session, session.begin():
        await _sent_after_analyze(session)
    async with sessionmaker() as session, session.begin():
        read = await latest_conversations_and_sent_messages(
            session,
            [(channel.id, "+15550000007"), (channel.id, "+15559999999")],
            [(channel.id, "nx-7"), (channel.id, "nx-unknown")],
            direction="nexus_to_axp",
        )
        assert set(read.latest) == {(channel.id, "+15550000007")}
        assert read.latest[(channel.id, "+15550000007")].generation == 1
        assert read.sent == {(channel.id, "nx-7")}
        [(statement, args)] = sent_statements
        assert await rows_thrown_away(session, statement, args) == 0


async def test_an_axp_batch_reads_its_routes_and_links_by_their_indexes(
    sessionmaker, channel, sent_statements
) -> None:
    async with sessionmaker() as session, session.begin():
        # Statistics of empty tables; then both grow.
        await session.execute(text("ANALYZE conversations"))
        await session.execute(text("ANALYZE message_links"))
        ids = await _conversations(session, channel, ROWS)
        await session.execute(
            insert(MessageLink),
            [
                {
                    "conversation_id": conversation_id,
                    "direction": "axp_to_nexus",
                    "axp_message_id": f"axp-{n}",
                    "status": "sent",
                    "created_at": T0,
                }
                # Five links a conversation: at one (a table of 7 pages) a sequential scan is
                # the cheaper plan, rightly; the test is that the cost stops growing with it.
                for n, conversation_id in enumerate(ids * 5)
            ],
        )
    dialog = f"+15550000007_{channel.nexus_channel_id}_1"
    async with sessionmaker() as session, session.begin():
        read = await routes_and_linked_messages(
            session, {dialog, "unknown-dialog"}, {"axp-7", "axp-unknown"}
        )
        assert [route.provider_dialog_id for route in read.routes] == [dialog]
        assert read.routes[0].nexus_channel_id == channel.nexus_channel_id
        assert read.linked == {"axp-7"}
        [(statement, args)] = sent_statements
        assert await rows_thrown_away(session, statement, args) == 0
