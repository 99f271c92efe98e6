"""A Genesys Cloud channel end to end over real HTTP on loopback, on SQLite and PostgreSQL.

Genesys Cloud's agent writes through the outbound webhook; the AXP simulator's agent answers;
each test asserts what the other simulator received on the wire and the rows the bridge wrote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from channel_bridge.db.models import Attempt, Delivery, InboxEvent, MessageLink
from tests.e2e.conftest import INTEGRATION_ID
from tests.e2e.genesys_cloud import (
    GC_CUSTOMER,
    GC_INTEGRATION_ID,
    GenesysCloudStack,
    start_gc_stack,
)
from tests.e2e.test_bridge_e2e import (
    PIXEL_PNG,
    axp_attachment,
    axp_message_event,
    typing_event,
)
from tests.support.waiting import eventually

UNFINISHED = ("pending", "in_flight")


@pytest.fixture
async def gc_stack(
    database_url: str, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[GenesysCloudStack]:
    async with start_gc_stack(database_url, sessionmaker) as running:
        yield running


async def settled(stack: GenesysCloudStack) -> list[Delivery]:
    async def done() -> list[Delivery] | None:
        rows = await stack.deliveries()
        return rows if rows and all(d.status not in UNFINISHED for d in rows) else None

    return await eventually(done, what="every delivery settled")


async def test_genesys_agent_text_reaches_axp_and_the_axp_reply_reaches_genesys(
    gc_stack: GenesysCloudStack,
) -> None:
    stack = gc_stack
    message = stack.gc.agent_message(GC_INTEGRATION_ID, GC_CUSTOMER, "Where is my parcel?")
    response = await stack.webhook(message)
    assert response.status_code == 200, response.text
    ack = response.json()["messageId"]
    # A Genesys retry (timeout) gets the same answer and relays nothing twice.
    assert (await stack.webhook(message)).json() == {"messageId": ack}

    [send] = await eventually(lambda: stack.sends(), what="AXP send")
    [conversation] = await stack.conversations()
    assert send["businessAccountName"] == INTEGRATION_ID
    assert send["customerIdentifiers"] == {"emails": [GC_CUSTOMER]}
    assert send["providerMessageId"] == message["id"]
    assert send["providerDialogId"] == conversation.provider_dialog_id
    assert send["headers"]["sourceAddress"] == GC_INTEGRATION_ID
    assert send["body"]["elementText"]["text"] == "Where is my parcel?"

    # The AXP agent answers: Genesys receives it as the customer's inbound message.
    [inbound] = await eventually(lambda: stack.gc.calls("message"), what="inbound message")
    assert inbound.integration_id == GC_INTEGRATION_ID
    assert inbound.headers["authorization"].removeprefix("Bearer ") in stack.gc.tokens
    [reply] = [c.event for c in stack.axp.callbacks if c.event["senderParticipantType"] == "AGENT"]
    assert inbound.document["text"] == "Agent reply to: Where is my parcel?"
    assert inbound.document["channel"]["messageId"] == f"axp-{reply['messageId']}"
    assert inbound.document["channel"]["from"] == {
        "id": GC_CUSTOMER,
        "idType": "Opaque",
        "nickname": GC_CUSTOMER,
    }
    await settled(stack)
    by_destination = {d.destination: d.status for d in await stack.deliveries()}
    assert by_destination["axp.send_message"] == "delivered"
    assert by_destination["genesys_cloud.send_message"] == "delivered"
    assert "nexus.send_message" not in by_destination
    [link] = await stack.links(MessageLink.direction == "axp_to_nexus")
    assert (link.axp_message_id, link.nexus_message_id) == (reply["messageId"], inbound.answer_id)
    # One OAuth token served every call.
    assert stack.gc.token_requests == 1


async def test_receipts_both_ways(gc_stack: GenesysCloudStack) -> None:
    stack = gc_stack
    message = stack.gc.agent_message(GC_INTEGRATION_ID, GC_CUSTOMER, "receipt please")
    assert (await stack.webhook(message)).status_code == 200
    # AXP reports the customer message delivered: Genesys gets a Delivered receipt for it.
    [receipt] = await eventually(lambda: stack.gc.calls("receipt"), what="inbound receipt")
    assert receipt.document["id"] == message["id"]
    assert receipt.document["status"] == "Delivered"
    assert receipt.document["direction"] == "Outbound"
    assert receipt.document["isFinalReceipt"] is True
    assert receipt.document["channel"]["to"]["id"] == GC_CUSTOMER
    # Genesys reports the agent reply we relayed as delivered: recorded on its link.
    [inbound] = await eventually(lambda: stack.gc.calls("message"), what="inbound message")

    async def link_status(expected: str) -> str | None:
        links = await stack.links(MessageLink.direction == "axp_to_nexus")
        return links[0].status if links and links[0].status == expected else None

    # The link learns Genesys's id for the message when the delivery's outcome commits.
    await eventually(lambda: link_status("sent"), what="link sent")
    # (inferred) the receipt carries the direction of the message it is about: Inbound.
    delivered = stack.gc.receipt(GC_INTEGRATION_ID, GC_CUSTOMER, inbound.answer_id, "Delivered")
    assert delivered["direction"] == "Inbound"
    assert (await stack.webhook(delivered)).status_code == 200
    assert await eventually(lambda: link_status("delivered"), what="link delivered")
    [event] = await stack.rows(InboxEvent, InboxEvent.kind == "receipt")
    assert event.source == "genesys_cloud.webhook"


async def test_typing_both_ways(gc_stack: GenesysCloudStack) -> None:
    stack = gc_stack
    message = stack.gc.agent_message(GC_INTEGRATION_ID, GC_CUSTOMER, "hello")
    assert (await stack.webhook(message)).status_code == 200
    await eventually(lambda: stack.gc.calls("message"), what="conversation open")
    [conversation] = await stack.conversations()
    # Genesys agent typing -> AXP :typing on the open conversation.
    assert (
        await stack.webhook(stack.gc.agent_typing(GC_INTEGRATION_ID, GC_CUSTOMER))
    ).status_code == 200
    [axp_typing] = await eventually(lambda: stack.axp.typing, what="AXP :typing")
    assert axp_typing["providerDialogId"] == conversation.provider_dialog_id
    # AXP agent typing -> Genesys inbound/open/event; the customer's own typing is an echo.
    for sender in ("CUSTOMER", "AGENT"):
        response = await stack.axp_callback(
            typing_event(conversation.provider_dialog_id, sender=sender)
        )
        assert response.status_code == 200
    [event] = await eventually(lambda: stack.gc.calls("event"), what="inbound typing event")
    assert event.document["events"] == [{"eventType": "Typing", "typing": {"type": "On"}}]
    assert event.document["channel"]["from"]["id"] == GC_CUSTOMER
    await settled(stack)
    assert len(stack.gc.calls("event")) == 1
    assert len(stack.sends()) == 1, "a typing indicator is not a message"
    # Routed at accept to Genesys Cloud's own destination (and circuit), never Nexus's.
    destinations = [d.destination for d in await stack.deliveries()]
    assert destinations.count("genesys_cloud.typing") == 1
    assert "nexus.typing" not in destinations


async def test_genesys_attachment_goes_through_the_axp_media_store(
    gc_stack: GenesysCloudStack,
) -> None:
    stack = gc_stack
    attachment = stack.gc.attachment(stack.gc_url, PIXEL_PNG, "image/png", "box.png")
    message = stack.gc.agent_message(
        GC_INTEGRATION_ID, GC_CUSTOMER, "photo", attachments=[attachment]
    )
    assert (await stack.webhook(message)).status_code == 200
    [send] = await eventually(lambda: stack.sends(), what="AXP send")
    assert send["body"]["elementType"] == "image"
    [uploaded] = send["attachments"]
    stored = stack.axp.media[uploaded["attachmentId"]]
    assert stored["content"] == PIXEL_PNG
    assert (stored["mediaName"], stored["mediaContentType"]) == ("box.png", "image/png")


async def test_customer_messages_are_never_relayed_back(gc_stack: GenesysCloudStack) -> None:
    stack = gc_stack
    echo = stack.gc.agent_message(GC_INTEGRATION_ID, GC_CUSTOMER, "our own message")
    echo["direction"] = "Inbound"
    assert (await stack.webhook(echo)).status_code == 200
    [event] = await eventually(
        lambda: stack.rows(InboxEvent, InboxEvent.source == "genesys_cloud.webhook"),
        what="stored",
    )
    assert event.kind == "message"
    assert await stack.deliveries() == []
    assert stack.sends() == []


async def test_a_wrong_signature_is_refused_and_nothing_is_relayed(
    gc_stack: GenesysCloudStack,
) -> None:
    stack = gc_stack
    body, headers = stack.gc.signed_webhook(
        GC_INTEGRATION_ID, stack.gc.agent_message(GC_INTEGRATION_ID, GC_CUSTOMER, "forged")
    )
    headers["X-Hub-Signature-256"] = "sha256=" + "A" * 43 + "="
    response = await stack.client.post(
        f"/genesys-cloud/integrations/{GC_INTEGRATION_ID}/webhook", content=body, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert await stack.rows(InboxEvent) == []
    assert stack.sends() == []


async def test_genesys_throttling_is_retried_until_it_passes(gc_stack: GenesysCloudStack) -> None:
    stack = gc_stack
    stack.gc.throttle_next = 2
    message = stack.gc.agent_message(GC_INTEGRATION_ID, GC_CUSTOMER, "busy?")
    assert (await stack.webhook(message)).status_code == 200
    await eventually(lambda: stack.gc.calls("message"), what="message after 429s")
    await eventually(lambda: stack.gc.calls("receipt"), what="receipt after 429s")
    rows = [d for d in await settled(stack) if d.destination.startswith("genesys_cloud.")]
    # The receipt and the reply both got through; the two 429s cost two more attempts.
    assert {d.destination: d.status for d in rows} == {
        "genesys_cloud.receipt": "delivered",
        "genesys_cloud.send_message": "delivered",
    }
    attempts = await stack.rows(Attempt, Attempt.delivery_id.in_([d.id for d in rows]))
    assert [a.http_status for a in attempts].count(429) == 2
    assert stack.gc.throttle_next == 0


async def test_axp_agent_attachment_reaches_genesys_as_a_signed_url_it_fetches(
    gc_stack: GenesysCloudStack,
) -> None:
    stack = gc_stack
    message = stack.gc.agent_message(GC_INTEGRATION_ID, GC_CUSTOMER, "send me the label")
    assert (await stack.webhook(message)).status_code == 200
    await eventually(lambda: stack.gc.calls("message"), what="the agent's first reply")
    [conversation] = await stack.conversations()
    media_id = stack.axp.store_media(PIXEL_PNG, name="label.png", content_type="image/png")
    # The callback's own URL has expired: the bridge asks AXP for a fresh one.
    expired = stack.axp.signed_media_path(media_id, ttl_ms=1)
    event = axp_message_event(
        conversation.provider_dialog_id,
        attachments=[axp_attachment(media_id, expired)],
    )
    assert (await stack.axp_callback(event)).status_code == 200

    def with_content() -> list[Any]:
        return [c for c in stack.gc.calls("message") if c.document.get("content")]

    [inbound] = await eventually(with_content, what="inbound message with an attachment")
    [content] = inbound.document["content"]
    attachment = content["attachment"]
    assert content["contentType"] == "Attachment"
    assert (attachment["mediaType"], attachment["mime"], attachment["filename"]) == (
        "Image",
        "image/png",
        "label.png",
    )
    assert attachment["url"].startswith(f"{stack.axp.base_url}/api/media-store/v1/media/")
    assert "signature=" in attachment["url"] and expired not in attachment["url"]
    # Genesys fetched it, with no credentials, and got the bytes AXP stored.
    [fetched] = stack.gc.fetched
    assert (fetched.status, fetched.content, fetched.mime) == (200, PIXEL_PNG, "image/png")
    fresh = stack.axp.recorded(method="GET", path_contains="/signed-download-uri")
    assert len(fresh) == 1


async def test_a_genesys_message_that_never_reaches_axp_is_reported_failed(
    gc_stack: GenesysCloudStack,
) -> None:
    stack = gc_stack
    stack.axp.faults.fail_next = [400]  # AXP refuses the send: permanent, dead at once
    message = stack.gc.agent_message(GC_INTEGRATION_ID, GC_CUSTOMER, "this one fails")
    assert (await stack.webhook(message)).status_code == 200

    [receipt] = await eventually(lambda: stack.gc.calls("receipt"), what="Failed receipt")
    assert receipt.document["id"] == message["id"]
    assert receipt.document["status"] == "Failed"
    assert receipt.document["direction"] == "Outbound"
    assert receipt.document["channel"]["to"]["id"] == GC_CUSTOMER
    assert receipt.document["reasons"] == [
        {"code": "GeneralError", "message": "the bridge could not deliver the message to AXP"}
    ]
    rows = await settled(stack)
    by_destination = {d.destination: d for d in rows}
    assert by_destination["axp.send_message"].status == "dead"
    report = by_destination["genesys_cloud.receipt"]
    assert report.status == "delivered"
    assert report.inbox_event_id == by_destination["axp.send_message"].inbox_event_id
    assert len(stack.sends()) == 1, "the one send AXP refused, not retried"


async def test_axp_attachments_can_be_kept_from_genesys(
    database_url: str, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with start_gc_stack(
        database_url, sessionmaker, genesys_cloud_relay_axp_attachments=False
    ) as stack:
        message = stack.gc.agent_message(GC_INTEGRATION_ID, GC_CUSTOMER, "label?")
        assert (await stack.webhook(message)).status_code == 200
        await eventually(lambda: stack.gc.calls("message"), what="the agent's first reply")
        [conversation] = await stack.conversations()
        media_id = stack.axp.store_media(PIXEL_PNG, name="label.png", content_type="image/png")
        event = axp_message_event(
            conversation.provider_dialog_id,
            text="here it is",
            attachments=[axp_attachment(media_id, stack.axp.signed_media_path(media_id))],
        )
        event["body"] = {"elementType": "text", "elementText": {"text": "here it is"}}
        assert (await stack.axp_callback(event)).status_code == 200

        def second() -> list[Any]:
            calls = stack.gc.calls("message")
            return calls[1:] if len(calls) > 1 else []

        [inbound] = await eventually(second, what="the text without its attachment")
        assert inbound.document["text"] == "here it is"
        assert "content" not in inbound.document
        assert stack.gc.fetched == []
        assert stack.axp.recorded(method="GET", path_contains="/signed-download-uri") == []
