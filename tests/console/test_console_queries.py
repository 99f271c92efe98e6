"""The queries behind the console's pages, on both backends: delivery filters by channel and
conversation, each destination's backlog and last error, attempts per minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.console import views
from channel_bridge.db.models import (
    Attempt,
    Channel,
    Conversation,
    Delivery,
    Integration,
    MessageLink,
)
from channel_bridge.errors import NotFound
from channel_bridge.mappings.conversations import provider_dialog_id
from channel_bridge.relay import service as relay

NOW = datetime(2026, 11, 24, 9, 30, 20, tzinfo=UTC)


def delivery(
    destination: str, partition: str | None, status: str = "pending", **values
) -> Delivery:
    return Delivery(
        destination=destination,
        partition_key=partition,
        sequence=0,
        payload={},
        status=status,
        attempt_count=values.pop("attempt_count", 0),
        next_attempt_at=NOW,
        created_at=values.pop("created_at", NOW - timedelta(minutes=10)),
        updated_at=NOW,
        skipped=False,
        **values,
    )


async def seed_conversations(session: AsyncSession) -> dict[str, Conversation]:
    session.add(
        Integration(
            integration_id="queries-integration",
            status="active",
            source="admin",
            created_at=NOW,
            updated_at=NOW,
        )
    )
    await session.flush()
    found = {}
    # "chan_1" holds an underscore: LIKE must not read it as a wildcard, and inside a
    # providerDialogId it is hashed.
    for name in ("+15550100300", "+15550100301", "chan_1"):
        channel = Channel(
            nexus_channel_id=name,
            axp_account_id="QUERYS",
            axp_channel_provider_id="p",
            axp_integration_id="queries-integration",
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(channel)
        await session.flush()
        conversation = Conversation(
            channel_id=channel.id,
            customer_address="+15557654321",
            generation=1,
            provider_dialog_id=provider_dialog_id(name, "+15557654321", 1),
            state="open",
            last_activity_at=NOW,
            created_at=NOW,
        )
        session.add(conversation)
        await session.flush()
        found[name] = conversation
    return found


async def test_deliveries_filtered_by_channel_and_by_conversation(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        conversations = await seed_conversations(session)
        rows = {}
        for name, conversation in conversations.items():
            rows[f"{name}:n2a"] = delivery("axp.send_message", f"n2a:{name}:+15557654321")
            rows[f"{name}:a2n"] = delivery(
                "nexus.send_message", f"a2n:{conversation.provider_dialog_id}"
            )
        rows["chanX1:n2a"] = delivery("axp.send_message", "n2a:chanX1:+15557654321")
        rows["akixi"] = delivery("akixi.upsert", "akixi:queries-integration")
        session.add_all(rows.values())
    ids = {key: row.id for key, row in rows.items()}

    async def listed(**filters) -> set[int]:
        async with sessionmaker() as session:
            page = await views.deliveries_page(session, views.DeliveryFilters(**filters))
        return {d.id for d in page.items}

    assert await listed(channel="+15550100300") == {
        ids["+15550100300:n2a"],
        ids["+15550100300:a2n"],
    }
    assert await listed(channel="chan_1") == {ids["chan_1:n2a"], ids["chan_1:a2n"]}
    second = conversations["+15550100301"]
    assert await listed(conversation=second.id) == {
        ids["+15550100301:n2a"],
        ids["+15550100301:a2n"],
    }
    assert await listed(conversation=second.id, channel="+15550100300") == set()
    assert await listed(conversation=second.id, destination="nexus.send_message") == {
        ids["+15550100301:a2n"]
    }
    assert len(await listed()) == len(rows)


async def test_destination_activity_counts_backlog_dead_and_attempts_per_minute(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        oldest = NOW - timedelta(minutes=42)
        pending = delivery("axp.send_message", "p1", created_at=oldest)
        in_flight = delivery("axp.send_message", "p2", status="in_flight")
        dead = delivery("axp.send_message", "p3", status="dead", last_error="gave up")
        done = delivery("nexus.send_message", "p4", status="delivered")
        session.add_all([pending, in_flight, dead, done])
        await session.flush()

        def attempt(row: Delivery, number: int, outcome: str, at: datetime, error=None) -> None:
            session.add(
                Attempt(
                    delivery_id=row.id, number=number, outcome=outcome, started_at=at, error=error
                )
            )

        # This minute: two delivered, one dead. Five minutes ago: one delivered.
        # Two hours ago: outside the window.
        attempt(done, 1, "delivered", NOW - timedelta(seconds=5))
        attempt(done, 2, "delivered", NOW - timedelta(seconds=10))
        attempt(dead, 1, "retry", NOW - timedelta(minutes=5, seconds=3), "HTTP 503 first")
        attempt(dead, 2, "dead", NOW - timedelta(seconds=15), "HTTP 503 last")
        attempt(done, 3, "delivered", NOW - timedelta(minutes=5))
        attempt(done, 4, "delivered", NOW - timedelta(hours=2))

    async with sessionmaker() as session:
        activity = await relay.destination_activity(
            session, destinations=["axp.send_message", "axp.typing"], now=NOW
        )
    by_name = {item.destination: item for item in activity}
    assert list(by_name) == ["axp.send_message", "axp.typing", "nexus.send_message"]
    axp, typing, nexus = by_name.values()
    assert (axp.backlog, axp.dead, axp.oldest_pending_at) == (2, 1, oldest)
    assert (axp.last_error, axp.last_error_at) == ("HTTP 503 last", NOW - timedelta(seconds=15))
    assert len(axp.died) == 60 and axp.died[-1] == 1 and sum(axp.died) == 1
    assert sum(axp.delivered) == 0
    assert nexus.delivered[-1] == 2 and nexus.delivered[-6] == 1 and sum(nexus.delivered) == 3
    assert (typing.backlog, typing.last_error, sum(typing.delivered)) == (0, None, 0)


async def test_a_conversation_trace_orders_both_directions(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Message links in the order taken in, each with its delivery's state; unknown is 404."""
    async with sessionmaker() as session, session.begin():
        conversation = (await seed_conversations(session))["+15550100300"]
        to_axp = delivery(
            "axp.send_message",
            "n2a:+15550100300:+15557654321",
            status="dead",
            last_error="HTTP 503",
            attempt_count=3,
        )
        to_axp.payload = {"text": "hello?"}
        session.add(to_axp)
        await session.flush()
        session.add_all(
            [
                MessageLink(
                    conversation_id=conversation.id,
                    direction="nexus_to_axp",
                    delivery_id=to_axp.id,
                    status="pending",
                    created_at=NOW,
                ),
                MessageLink(
                    conversation_id=conversation.id,
                    direction="axp_to_nexus",
                    status="read",
                    status_updated_at=NOW,
                    status_detail="read",
                    created_at=NOW + timedelta(seconds=1),
                ),
            ]
        )
    async with sessionmaker() as session:
        trace = await views.conversation_trace(session, conversation.id)
        assert [m.link.direction for m in trace.messages] == ["nexus_to_axp", "axp_to_nexus"]
        first, second = trace.messages
        assert first.text == "hello?"
        assert [(h.name, h.state) for h in first.hops] == [
            ("accepted from Nexus", "done"),
            ("delivered to AXP", "failed"),
            ("receipt from AXP", "waiting"),
        ]
        assert "HTTP 503" in (first.hops[1].detail or "")
        assert second.hops[-1].state == "done"
        with pytest.raises(NotFound):
            await views.conversation_trace(session, 999_999)
