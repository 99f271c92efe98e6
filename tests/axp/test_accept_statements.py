"""What the group commit sends PostgreSQL for an AXP agent message in one of our
conversations: the inbox insert, one read (the conversation's route and whether the message was
relayed already), the delivery insert with the message's link (BEGIN and COMMIT aside)."""

from __future__ import annotations

import json

from sqlalchemy import select

from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Conversation, Delivery, MessageLink
from tests.axp.conftest import ACCOUNT_ID
from tests.conftest import TEST_CALLBACK_TOKEN, make_settings, running_app
from tests.nexus.channels import add_channel
from tests.support.plans import statement_kind

URL = f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications"
NEXUS_CHANNEL = "+16504661149"
CUSTOMER = "+15551230001"
DIALOG = f"{CUSTOMER}_{NEXUS_CHANNEL}_1"

BOTH_READS = "routes and linked messages read"


def agent_message(message_id: str) -> dict[str, object]:
    return {
        "eventType": "MESSAGES",
        "accountId": ACCOUNT_ID,
        "messageId": message_id,
        "correlationId": f"corr-{message_id}",
        "dialogId": "dialog-1",
        "engagementId": "engagement-1",
        "providerDialogId": DIALOG,
        "channelProviderId": "provider-1",
        "channelId": "Messaging",
        "senderParticipantId": "agent-1",
        "senderParticipantType": "AGENT",
        "senderParticipantName": "Agent",
        "status": "SENT",
        "eventDate": "2026-11-24T01:00:00.000Z",
        "body": {"elementType": "text", "elementText": {"text": "hi", "textFormat": "PLAINTEXT"}},
    }


async def test_an_agent_message_is_accepted_in_three_statements(
    database_url, sessionmaker, backend, sent_statements
) -> None:
    settings = make_settings(database_url, axp_account_id=ACCOUNT_ID, worker_enabled=False)
    channel = await add_channel(sessionmaker, settings, NEXUS_CHANNEL)
    async with sessionmaker() as session, session.begin():
        conversation = Conversation(
            channel_id=channel.id,
            customer_address=CUSTOMER,
            generation=1,
            provider_dialog_id=DIALOG,
            state="open",
            last_activity_at=utcnow(),
        )
        session.add(conversation)
    async with running_app(settings) as (_app, client):
        sent_statements.clear()
        response = await client.post(
            URL,
            content=json.dumps(agent_message("agent-message-1")).encode(),
            headers={"content-type": "application/json"},
        )
        statements = [sql for sql, _args in sent_statements]
        # The same message with another status: relayed once (the read finds its link).
        again = await client.post(
            URL,
            content=json.dumps(
                {**agent_message("agent-message-1"), "status": "DELIVERED"}
            ).encode(),
            headers={"content-type": "application/json"},
        )
    assert (response.status_code, again.status_code) == (200, 200), response.text

    if backend == "postgresql":
        kinds = [statement_kind(sql, union_reads=BOTH_READS) for sql in statements]
        assert kinds == [
            "INSERT INTO inbox_events",
            BOTH_READS,
            "INSERT INTO deliveries",
        ]
        assert "INSERT INTO message_links" in statements[-1]
    async with sessionmaker() as session:
        [delivery] = (await session.scalars(select(Delivery))).all()
        [link] = (await session.scalars(select(MessageLink))).all()
        stored = await session.get(Conversation, conversation.id)
    assert stored is not None
    assert delivery.destination == "nexus.send_message"
    assert delivery.payload["conversation"]["provider_dialog_id"] == DIALOG
    assert (link.delivery_id, link.conversation_id, link.axp_message_id) == (
        delivery.id,
        stored.id,
        "agent-message-1",
    )
    assert link.nexus_message_id == "axp-agent-message-1"
