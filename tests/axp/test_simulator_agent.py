"""The simulator's agent answers through our callback route the way AXP does (in-process)."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from channel_bridge.app import create_app
from channel_bridge.db.models import InboxEvent
from channel_bridge.platforms.axp.schemas import MessageEvent, parse_callback_event
from tests.axp.conftest import ACCOUNT_ID, axp_settings, make_simulator
from tests.axp.test_messaging import customer_message


async def test_customer_message_gets_delivered_status_and_an_agent_reply(
    database_url: str, engine, sessionmaker
) -> None:
    sim = make_simulator(agent=True)
    settings = axp_settings(database_url)
    app = create_app(settings)
    app.axp_transport = httpx.ASGITransport(app=sim.app)
    async with app.router.lifespan_context(app):
        platform = app.state_now.axp
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://bridge.example.com"
        ) as to_bridge:
            sim.callback_client = to_bridge
            await platform.subscriptions.ensure_subscription(
                "591c2529-c3a3-4062-a213-b239c18f543b", platform.callback_url, ["MESSAGES"]
            )
            sent = await platform.messaging.send_message(customer_message(1))
            await sim.wait_idle()
    assert [c.status for c in sim.callbacks] == [200, 200]
    async with sessionmaker() as session:
        rows = (await session.scalars(select(InboxEvent).order_by(InboxEvent.id))).all()
    events = [parse_callback_event(row.payload) for row in rows]
    assert all(isinstance(e, MessageEvent) for e in events)
    delivered, reply = events
    assert (delivered.messageId, delivered.status, delivered.senderParticipantType) == (
        sent.message_id,
        "DELIVERED",
        "CUSTOMER",
    )
    assert delivered.accountId == ACCOUNT_ID and delivered.correlationId == "dlv-1"
    assert reply.senderParticipantType == "AGENT"
    assert reply.providerDialogId == "+15551230000_+15559870000_SMS"
    assert reply.engagementId == sent.engagement_id and reply.dialogId == sent.dialog_id
    customer = reply.customer_recipient()
    assert customer is not None and customer.providerParticipantId == "+15551230000"
    assert reply.headers is not None and reply.headers.sourceAddress == "+15559870000"
    assert (
        reply.body.elementText is not None
        and reply.body.elementText.text == "Agent reply to: hello"
    )
