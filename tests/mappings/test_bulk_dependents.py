"""`db.bulk.insert_rows(dependents=...)`: rows of a second table written with the rows they
name, on both backends (PostgreSQL: one statement on the driver; SQLite: one per table)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from channel_bridge.db.base import utcnow
from channel_bridge.db.bulk import Dependent, insert_rows
from channel_bridge.db.models import Channel, Conversation, MessageLink
from channel_bridge.mappings.repository import conversation_table, link_table


def _conversation(channel: Channel, customer: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "channel_id": channel.id,
        "customer_address": customer,
        "generation": 1,
        "provider_dialog_id": f"{customer}_{channel.nexus_channel_id}_1",
        "state": "open",
        "last_activity_at": now,
        "created_at": now,
    }


def _link(customer: str, ack_id: str) -> dict[str, Any]:
    return {
        "direction": "nexus_to_axp",
        "ack_id": ack_id,
        "nexus_message_id": None,
        "status": "pending",
        "created_at": utcnow(),
        "customer": customer,
    }


async def test_a_dependent_row_is_written_only_with_the_row_it_names(
    sessionmaker, channel, sent_statements, backend
) -> None:
    async with sessionmaker() as session, session.begin():
        await insert_rows(session, conversation_table, [_conversation(channel, "+15550000001")])
    async with sessionmaker() as session, session.begin():
        inserted = await insert_rows(
            session,
            conversation_table,
            [_conversation(channel, f"+1555000000{n}") for n in (1, 2, 3)],
            on_conflict_do_nothing=("channel_id", "customer_address", "generation"),
            returning=("id", "customer_address"),
            dependents=[
                Dependent(
                    link_table,
                    [
                        _link("+15550000001", "of-the-existing-one"),
                        _link("+15550000002", "of-two"),
                        _link("+15550000003", "of-three"),
                        _link("+15550000003", "of-three-again"),
                    ],
                    column="conversation_id",
                    by="customer",
                    match="customer_address",
                )
            ],
        )
    assert sorted(row.customer_address for row in inserted) == ["+15550000002", "+15550000003"]
    async with sessionmaker() as session:
        ids = {
            c.customer_address: c.id for c in (await session.scalars(select(Conversation))).all()
        }
        links = (await session.scalars(select(MessageLink))).all()
    # The conflicting conversation was not inserted: its link is not written either.
    assert sorted((link.ack_id, link.conversation_id) for link in links) == [
        ("of-three", ids["+15550000003"]),
        ("of-three-again", ids["+15550000003"]),
        ("of-two", ids["+15550000002"]),
    ]
    if backend == "postgresql":
        [statement] = [sql for sql, _args in sent_statements if "message_links" in sql]
        assert statement.startswith("WITH inserted AS (INSERT INTO conversations")


async def test_a_dependent_needs_the_columns_it_joins_on_returned(sessionmaker, channel) -> None:
    async with sessionmaker() as session, session.begin():
        with pytest.raises(ValueError, match="customer_address"):
            await insert_rows(
                session,
                conversation_table,
                [_conversation(channel, "+15550000009")],
                returning=("id",),
                dependents=[
                    Dependent(
                        link_table,
                        [_link("+15550000009", "x")],
                        column="conversation_id",
                        by="customer",
                        match="customer_address",
                    )
                ],
            )
