"""What the group commit sends PostgreSQL for an accepted Nexus message: every read and write
of the batch in four statements (BEGIN and COMMIT aside), the bridge's accept step included."""

from __future__ import annotations

from sqlalchemy import select

from channel_bridge.db.models import Conversation, Delivery, MessageLink
from tests.conftest import make_settings, running_app
from tests.nexus.channels import add_channel
from tests.nexus.test_webhook import CHANNEL, MESSAGE, URL, encode, signed_headers
from tests.support.plans import statement_kind

BOTH_READS = "conversations and sent links read"


async def test_a_nexus_message_is_accepted_in_four_statements(
    database_url, sessionmaker, backend, sent_statements
) -> None:
    settings = make_settings(database_url, worker_enabled=False)
    await add_channel(sessionmaker, settings, CHANNEL)
    body = encode(MESSAGE)
    async with running_app(settings) as (_app, client):
        sent_statements.clear()
        response = await client.post(URL, content=body, headers=signed_headers(body))
        statements = [sql for sql, _args in sent_statements]
    assert response.status_code == 200, response.text

    if backend == "postgresql":
        kinds = [statement_kind(sql, union_reads=BOTH_READS) for sql in statements]
        assert kinds == [
            "INSERT INTO inbox_events",
            BOTH_READS,
            "INSERT INTO conversations",
            "INSERT INTO deliveries",
        ]
        # The message link goes in with its delivery.
        assert "INSERT INTO message_links" in statements[-1]
    async with sessionmaker() as session:
        [conversation] = (await session.scalars(select(Conversation))).all()
        [delivery] = (await session.scalars(select(Delivery))).all()
        [link] = (await session.scalars(select(MessageLink))).all()
    assert conversation.customer_address == MESSAGE["to"]
    assert delivery.payload["provider_dialog_id"] == conversation.provider_dialog_id
    assert (link.delivery_id, link.conversation_id, link.nexus_message_id) == (
        delivery.id,
        conversation.id,
        MESSAGE["id"],
    )
    assert link.ack_id == response.json()["messageId"]
