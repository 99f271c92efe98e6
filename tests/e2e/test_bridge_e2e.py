"""The bridge end to end over real HTTP on loopback (issue 6), on SQLite and PostgreSQL.

Each test drives one side through its simulator and asserts on what the other simulator
received on the wire (bodies, headers, signatures) and on the rows the bridge wrote.
"""

from __future__ import annotations

import uuid
from typing import Any

from channel_bridge.db.models import Attempt, Delivery, InboxEvent, MessageLink
from channel_bridge.platforms.nexus.client import SYNTHETIC_MEDIA_PREFIX
from channel_bridge.platforms.nexus.signing import SIGNATURE_HEADER, verify
from channel_bridge.relay.destinations import idempotency_key_for
from channel_bridge.sandbox.nexus import ReceivedCall, StoredMedia
from tests.conftest import TEST_ADMIN_TOKEN
from tests.e2e.conftest import (
    ACCOUNT_ID,
    API_SECRET,
    CCID,
    CHANNEL,
    CHANNEL_PROVIDER_ID,
    CUSTOMER,
    INTEGRATION_ID,
    Stack,
    start_stack,
)
from tests.support.waiting import eventually

# A 1x1 PNG: a real image that both media stores must carry byte for byte.
PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
EVENT_DATE = "2026-11-24T01:00:00.000Z"
UNFINISHED = ("pending", "in_flight")


# --- what each platform sends ---------------------------------------------------------------


def nexus_message(text: str | None = "Hello from Genesys", **extra: Any) -> dict[str, Any]:
    """A Nexus Async webhook message: the Genesys side writing to the customer."""
    message: dict[str, Any] = {
        "id": f"nx-{uuid.uuid4().hex[:12]}",
        "channelId": CHANNEL,
        "from": CHANNEL,
        "to": CUSTOMER,
    }
    if text is not None:
        message["text"] = text
    message.update(extra)
    return message


def axp_message_event(
    provider_dialog_id: str,
    *,
    text: str = "Agent here",
    sender: str = "AGENT",
    status: str = "DELIVERED",
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A MESSAGES callback as AXP posts it for a message written by `sender`."""
    event: dict[str, Any] = {
        "eventType": "MESSAGES",
        "correlationId": str(uuid.uuid4()),
        "eventDate": EVENT_DATE,
        "messageId": str(uuid.uuid4()),
        "accountId": ACCOUNT_ID,
        "dialogId": str(uuid.uuid4()),
        "engagementId": str(uuid.uuid4()),
        "status": status,
        "businessAccountName": INTEGRATION_ID,
        "channelProviderId": CHANNEL_PROVIDER_ID,
        "channelId": "Messaging",
        "providerDialogId": provider_dialog_id,
        "senderParticipantId": str(uuid.uuid4()),
        "senderParticipantName": CUSTOMER if sender == "CUSTOMER" else "Agent Smith",
        "senderParticipantType": sender,
        "body": {"elementType": "text", "elementText": {"text": text, "textFormat": "PLAINTEXT"}},
        "headers": {"sourceAddress": CHANNEL, "sourceType": "nexus-async"},
    }
    if attachments:
        event["attachments"] = attachments
        event["body"] = {"elementType": "image"}
    return event


def axp_attachment(media_id: str, url: str, *, name: str = "label.png") -> dict[str, Any]:
    """An AXP callback's attachment entry for PIXEL_PNG stored in the simulator as `media_id`."""
    return {
        "attachmentId": media_id,
        "name": name,
        "contentType": "image/png",
        "size": len(PIXEL_PNG),
        "url": url,
    }


def participant_disconnected(provider_dialog_id: str, participant_type: str) -> dict[str, Any]:
    return {
        "eventType": "PARTICIPANT_DISCONNECTED",
        "correlationId": str(uuid.uuid4()),
        "eventDate": EVENT_DATE,
        "engagementId": str(uuid.uuid4()),
        "dialogId": str(uuid.uuid4()),
        "accountId": ACCOUNT_ID,
        "channelId": "Messaging",
        "channelProviderId": CHANNEL_PROVIDER_ID,
        "connectionId": str(uuid.uuid4()),
        "participantId": str(uuid.uuid4()),
        "participantType": participant_type,
        "providerDialogId": provider_dialog_id,
    }


def typing_event(provider_dialog_id: str, sender: str = "AGENT") -> dict[str, Any]:
    return {
        "eventType": "TYPING",
        "correlationId": str(uuid.uuid4()),
        "eventDate": EVENT_DATE,
        "dialogId": str(uuid.uuid4()),
        "engagementId": str(uuid.uuid4()),
        "accountId": ACCOUNT_ID,
        "providerDialogId": provider_dialog_id,
        "channelProviderId": CHANNEL_PROVIDER_ID,
        "senderParticipantId": str(uuid.uuid4()),
        "senderParticipantType": sender,
        "senderParticipantDisplayName": "Agent Smith",
        "channelId": "Messaging",
        "businessAccountName": INTEGRATION_ID,
    }


# --- waiting and checking ---------------------------------------------------------------------


async def settled(stack: Stack) -> list[Delivery]:
    """Every delivery queued so far, once none is pending or in flight."""

    async def done() -> list[Delivery] | None:
        rows = await stack.deliveries()
        return rows if rows and all(d.status not in UNFINISHED for d in rows) else None

    return await eventually(done, what="every delivery settled")


async def delivered(stack: Stack, destination: str) -> list[Delivery]:
    rows = await stack.deliveries(Delivery.destination == destination)
    return [d for d in rows if d.status == "delivered"]


async def open_conversation(stack: Stack) -> tuple[str, str]:
    """A first Nexus message and the agent's answer: (the ack we gave, providerDialogId)."""
    response = await stack.nexus_webhook(nexus_message("first"))
    assert response.status_code == 200
    await eventually(lambda: stack.nexus.calls("message"), what="agent reply at Nexus")
    await stack.axp.wait_idle()
    await settled(stack)
    [conversation] = await stack.conversations()
    return response.json()["messageId"], conversation.provider_dialog_id


def signed_by_channel(call: ReceivedCall) -> bool:
    """X-Hub-Signature is the channel API secret's HMAC of the exact bytes Nexus received."""
    signature = call.headers.get(SIGNATURE_HEADER.lower())
    return verify(call.body, signature, [API_SECRET], "hex") is not None


def text_of(send: dict[str, Any]) -> str | None:
    return (send["body"].get("elementText") or {}).get("text")


# --- 1. Nexus -> AXP text --------------------------------------------------------------------


async def test_nexus_text_reaches_axp_as_send_async_message(stack: Stack) -> None:
    message = nexus_message("Where is my parcel?")
    response = await stack.nexus_webhook(message)
    assert response.status_code == 200
    ack_id = response.json()["messageId"]
    assert ack_id.startswith("nx-")
    # Nexus redelivers on a timeout: the same answer, nothing queued twice.
    again = await stack.nexus_webhook(message)
    assert again.status_code == 200 and again.json() == {"messageId": ack_id}

    [accepted] = await eventually(lambda: stack.axp.messages, what="AXP send")
    [send_request] = [r for r in stack.axp.recorded(method="POST") if r.path.endswith("/messages")]
    assert send_request.path == (f"/api/digital/custom-messaging/v1/accounts/{ACCOUNT_ID}/messages")
    assert send_request.headers["appkey"] == stack.axp.app_key
    assert send_request.headers["authorization"].removeprefix("Bearer ") in stack.axp.tokens
    body = send_request.json
    [conversation] = await stack.conversations()
    [delivery] = await stack.deliveries(Delivery.destination == "axp.send_message")
    assert body["channelProviderId"] == CHANNEL_PROVIDER_ID
    assert body["channelId"] == "Messaging"
    assert body["businessAccountName"] == INTEGRATION_ID
    assert body["customerIdentifiers"] == {"phoneNumbers": [CUSTOMER]}
    assert body["providerDialogId"] == conversation.provider_dialog_id
    assert body["providerSenderId"] == CUSTOMER
    assert body["providerMessageId"] == message["id"]
    assert body["correlationId"] == f"dlv-{delivery.id}"
    assert body["body"] == {
        "elementType": "text",
        "elementText": {"text": "Where is my parcel?", "textFormat": "PLAINTEXT"},
    }
    assert body["headers"]["sourceAddress"] == CHANNEL
    assert not body.get("attachments")

    await eventually(lambda: delivered(stack, "axp.send_message"), what="delivery delivered")
    [conversation] = await stack.conversations()
    assert (conversation.customer_address, conversation.generation, conversation.state) == (
        CUSTOMER,
        1,
        "open",
    )
    assert conversation.axp_engagement_id == accepted["engagementId"]
    assert conversation.axp_dialog_id == accepted["dialogId"]
    [link] = await stack.links(MessageLink.direction == "nexus_to_axp")
    assert (link.ack_id, link.nexus_message_id, link.axp_message_id) == (
        ack_id,
        message["id"],
        accepted["messageId"],
    )
    assert (link.delivery_id, link.conversation_id) == (delivery.id, conversation.id)
    [event] = await stack.rows(InboxEvent, InboxEvent.source == "nexus.webhook")
    assert event.ack == {"messageId": ack_id}
    assert len(stack.sends()) == 1


# --- 2. Nexus -> AXP with attachments ------------------------------------------------------


async def test_nexus_attachments_are_uploaded_to_axp_media_store(stack: Stack) -> None:
    png_id, pdf_id = str(uuid.uuid4()), str(uuid.uuid4())
    pdf = b"%PDF-1.4\n% e2e invoice\n%%EOF\n"
    stack.nexus.media[png_id] = StoredMedia(png_id, CHANNEL, "box.png", "image/png", PIXEL_PNG)
    stack.nexus.media[pdf_id] = StoredMedia(pdf_id, CHANNEL, "invoice.pdf", "application/pdf", pdf)
    # Nexus names media either by its synthetic URL or by a download URL on its own host.
    by_synthetic_url = nexus_message(
        "photo",
        media=[
            {
                "url": SYNTHETIC_MEDIA_PREFIX + png_id,
                "contentType": "image/png",
                "filename": "box.png",
            }
        ],
    )
    by_download_url = nexus_message(
        None,
        media=[
            {
                "url": f"{stack.nexus_url}/nexus/v3/media/{pdf_id}",
                "contentType": "application/pdf",
                "filename": "invoice.pdf",
            }
        ],
    )
    for message in (by_synthetic_url, by_download_url):
        assert (await stack.nexus_webhook(message)).status_code == 200

    sends = await eventually(lambda: len(stack.sends()) == 2 and stack.sends(), what="2 sends")
    by_message = {send["providerMessageId"]: send for send in sends}
    photo, invoice = by_message[by_synthetic_url["id"]], by_message[by_download_url["id"]]
    assert photo["body"] == {
        "elementType": "image",
        "elementText": {"text": "photo", "textFormat": "PLAINTEXT"},
    }
    assert invoice["body"] == {"elementType": "file"}
    for send, content, name, content_type in (
        (photo, PIXEL_PNG, "box.png", "image/png"),
        (invoice, pdf, "invoice.pdf", "application/pdf"),
    ):
        [attachment] = send["attachments"]
        stored = stack.axp.media[attachment["attachmentId"]]
        assert stored["content"] == content
        assert (stored["mediaName"], stored["mediaContentType"], stored["mediaSize"]) == (
            name,
            content_type,
            len(content),
        )
    assert len(stack.axp.media) == 2
    sends_delivered = await settled(stack)
    assert {d.status for d in sends_delivered if d.destination == "axp.send_message"} == {
        "delivered"
    }


# --- 3. AXP -> Nexus ---------------------------------------------------------------------------


async def test_agent_reply_reaches_nexus_signed_with_the_channel_api_secret(stack: Stack) -> None:
    response = await stack.nexus_webhook(nexus_message("Is anyone there?"))
    assert response.status_code == 200

    [call] = await eventually(lambda: stack.nexus.calls("message"), what="agent reply at Nexus")
    assert call.channel_id == CHANNEL
    assert call.headers["x-ccid"] == CCID
    assert signed_by_channel(call)
    [reply] = [c.event for c in stack.axp.callbacks if c.event["senderParticipantType"] == "AGENT"]
    assert call.document == {
        "id": f"axp-{reply['messageId']}",
        "channelId": CHANNEL,
        "from": CUSTOMER,
        "to": CHANNEL,
        "text": "Agent reply to: Is anyone there?",
        "timestamp": reply["eventDate"],
    }

    async def relayed_links() -> list[MessageLink]:
        links = await stack.links(MessageLink.direction == "axp_to_nexus")
        return [link for link in links if link.status == "sent"]

    [link] = await eventually(relayed_links, what="axp_to_nexus link")
    [conversation] = await stack.conversations()
    assert (link.axp_message_id, link.conversation_id) == (reply["messageId"], conversation.id)
    assert link.nexus_message_id


async def test_nexus_receipts_for_agent_messages_are_recorded_on_the_link(stack: Stack) -> None:
    await stack.nexus_webhook(nexus_message("Where is my order?"))
    [call] = await eventually(lambda: stack.nexus.calls("message"), what="agent reply at Nexus")
    relayed_id = call.document["id"]

    async def link_status(expected: str) -> bool:
        links = await stack.links(MessageLink.direction == "axp_to_nexus")
        return bool(links) and links[0].status == expected

    await eventually(lambda: link_status("sent"), what="relayed link")
    # Nexus reports delivery, then reading, of the message we relayed (a receipt webhook).
    for status in ("delivered", "read"):
        response = await stack.nexus_webhook({"messageId": relayed_id, "status": status})
        assert response.status_code == 200, response.text
        await eventually(lambda expected=status: link_status(expected), what=f"link {status}")
    # A receipt is stored, never relayed to AXP (AXP has no API for it). The link changes
    # inside the handler, before its delivery's outcome commits: wait for that too.
    assert len(stack.sends()) == 1
    await settled(stack)
    receipts = await stack.deliveries(Delivery.destination == "bridge.nexus_receipt")
    assert [d.status for d in receipts] == ["delivered", "delivered"]


async def test_an_agent_message_without_a_message_id_takes_its_nexus_id_from_its_delivery(
    stack: Stack,
) -> None:
    # Its link cannot be written with the delivery insert (the id is made from the delivery's
    # own id): the accept step writes it once the id is known.
    _ack, dialog = await open_conversation(stack)
    event = axp_message_event(dialog, text="sent without an id")
    del event["messageId"]
    assert (await stack.axp_callback(event)).status_code == 200

    def relayed() -> list[ReceivedCall]:
        calls = stack.nexus.calls("message")
        return [c for c in calls if c.document.get("text") == "sent without an id"]

    [call] = await eventually(relayed, what="agent message without a messageId at Nexus")
    await settled(stack)
    [link] = await stack.links(
        MessageLink.direction == "axp_to_nexus", MessageLink.axp_message_id.is_(None)
    )
    assert link.delivery_id is not None
    assert call.document["id"] == f"axp-{idempotency_key_for(link.delivery_id)}"
    assert link.nexus_message_id  # the id Nexus answered with, once sent
    [delivery] = await stack.deliveries(Delivery.id == link.delivery_id)
    assert (delivery.destination, delivery.status) == ("nexus.send_message", "delivered")


async def test_agent_attachment_goes_through_nexus_media_upload(stack: Stack) -> None:
    _ack, dialog = await open_conversation(stack)
    media_id = stack.axp.store_media(PIXEL_PNG, name="label.png", content_type="image/png")
    event = axp_message_event(
        dialog,
        attachments=[axp_attachment(media_id, stack.axp.signed_media_path(media_id))],
    )
    assert (await stack.axp_callback(event)).status_code == 200

    def relayed() -> list[ReceivedCall]:
        expected = f"axp-{event['messageId']}"
        return [c for c in stack.nexus.calls("message") if c.document["id"] == expected]

    [call] = await eventually(relayed, what="agent attachment at Nexus")
    [upload] = stack.nexus.calls("media")
    assert upload.headers["x-ccid"] == CCID
    assert signed_by_channel(upload), "the multipart upload is signed over its exact body"
    [stored] = stack.nexus.media.values()
    assert (stored.content, stored.filename, stored.mimetype) == (
        PIXEL_PNG,
        "label.png",
        "image/png",
    )
    assert call.document["media"] == [
        {
            "url": SYNTHETIC_MEDIA_PREFIX + stored.media_id,
            "contentType": "image/png",
            "filename": "label.png",
        }
    ]
    assert signed_by_channel(call)


async def test_agent_message_without_provider_dialog_id_found_by_customer_recipient(
    stack: Stack,
) -> None:
    _ack, dialog = await open_conversation(stack)
    event = axp_message_event(dialog, text="found by the recipient")
    del event["providerDialogId"]
    event["recipientParticipants"] = [
        {
            "participantId": str(uuid.uuid4()),
            "participantType": "CUSTOMER",
            "connectionId": str(uuid.uuid4()),
            "providerParticipantId": CUSTOMER,
            "channelProviderId": CHANNEL_PROVIDER_ID,
        }
    ]
    assert (await stack.axp_callback(event)).status_code == 200

    def relayed() -> list[ReceivedCall]:
        return [
            c
            for c in stack.nexus.calls("message")
            if c.document.get("text") == "found by the recipient"
        ]

    [call] = await eventually(relayed, what="agent message at Nexus")
    assert (call.document["from"], call.document["to"]) == (CUSTOMER, CHANNEL)
    assert signed_by_channel(call)


# --- 4. receipts -----------------------------------------------------------------------------


async def test_axp_delivered_status_becomes_nexus_receipt(stack: Stack) -> None:
    response = await stack.nexus_webhook(nexus_message("receipt please"))
    ack_id = response.json()["messageId"]

    [receipt] = await eventually(lambda: stack.nexus.calls("receipt"), what="receipt at Nexus")
    assert receipt.document == {"messageId": ack_id, "status": "delivered"}
    assert receipt.headers["x-ccid"] == CCID
    assert signed_by_channel(receipt)

    async def delivered_link() -> list[MessageLink]:
        links = await stack.links(MessageLink.direction == "nexus_to_axp")
        return [link for link in links if link.status == "delivered"]

    [link] = await eventually(delivered_link, what="link status delivered")
    assert (link.ack_id, link.status_detail) == (ack_id, "DELIVERED")

    # The customer reads it: AXP re-reports the same message with status READ.
    [delivered_echo] = [
        c.event for c in stack.axp.callbacks if c.event["senderParticipantType"] == "CUSTOMER"
    ]
    read = {**delivered_echo, "status": "READ", "correlationId": str(uuid.uuid4())}
    assert (await stack.axp_callback(read)).status_code == 200
    await eventually(lambda: len(stack.nexus.calls("receipt")) == 2, what="read receipt")
    assert stack.nexus.calls("receipt")[1].document == {"messageId": ack_id, "status": "read"}
    [link] = await stack.links(MessageLink.direction == "nexus_to_axp")
    assert link.status == "read"


async def test_receipt_found_by_our_ack_id_before_axp_message_id_is_known(stack: Stack) -> None:
    # A send that AXP accepted but whose answer never reached us (a timeout) leaves the link
    # without AXP's message id; AXP still reports DELIVERED. Without a Nexus id on the message,
    # the providerMessageId AXP echoes is the id we answered the webhook with.
    stack.axp.agent = False
    stack.axp.faults.error_rate = 1.0
    message = nexus_message("no id on this one")
    del message["id"]
    response = await stack.nexus_webhook(message)
    ack_id = response.json()["messageId"]

    async def link_without_axp_id() -> list[MessageLink]:
        return await stack.links(MessageLink.ack_id == ack_id, MessageLink.axp_message_id.is_(None))

    await eventually(link_without_axp_id, what="link created by the first attempt")
    [conversation] = await stack.conversations()
    status = axp_message_event(
        conversation.provider_dialog_id,
        text="no id on this one",
        sender="CUSTOMER",
        status="DELIVERED",
    )
    status["providerMessageId"] = ack_id
    assert (await stack.axp_callback(status)).status_code == 200

    [receipt] = await eventually(lambda: stack.nexus.calls("receipt"), what="receipt at Nexus")
    assert receipt.document == {"messageId": ack_id, "status": "delivered"}
    [link] = await stack.links(MessageLink.ack_id == ack_id)
    assert (link.status, link.axp_message_id) == ("delivered", status["messageId"])
    stack.axp.faults.error_rate = 0.0
    await eventually(lambda: stack.axp.messages, what="the send after AXP recovers")
    assert stack.axp.messages[0]["providerMessageId"] == ack_id


async def test_axp_engagement_error_fails_the_delivery_it_names(stack: Stack) -> None:
    stack.axp.agent = False
    response = await stack.nexus_webhook(nexus_message("will fail in AXP"))
    assert response.status_code == 200
    [delivery] = await eventually(
        lambda: delivered(stack, "axp.send_message"), what="send delivered"
    )
    error = {
        "eventType": "ENGAGEMENT_ERROR",
        "correlationId": f"dlv-{delivery.id}",
        "eventDate": EVENT_DATE,
        "type": "ENGAGEMENT_CREATION_FAILED",
        "title": "Engagement creation failed",
        "detail": "No routing rule matched",
        "providerDialogId": stack.sends()[0]["providerDialogId"],
        "channelProviderId": CHANNEL_PROVIDER_ID,
        "accountId": ACCOUNT_ID,
    }
    assert (await stack.axp_callback(error)).status_code == 200

    async def failed_link() -> list[MessageLink]:
        links = await stack.links(MessageLink.direction == "nexus_to_axp")
        return [link for link in links if link.status == "failed"]

    [link] = await eventually(failed_link, what="link failed")
    assert "No routing rule matched" in (link.status_detail or "")
    shown = await stack.client.get(
        f"/admin/v1/deliveries/{delivery.id}",
        headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"},
    )
    assert shown.status_code == 200
    assert shown.json()["status"] == "dead"
    assert "Engagement creation failed: No routing rule matched" in shown.json()["last_error"]


async def test_axp_events_without_correlation_id_are_stored_once_and_handled(
    stack: Stack,
) -> None:
    """The spec calls correlationId "an optional field": such events must not be refused."""
    _ack, dialog = await open_conversation(stack)
    error = {
        "eventType": "ENGAGEMENT_ERROR",
        "eventDate": EVENT_DATE,
        "type": "ENGAGEMENT_CREATION_FAILED",
        "title": "Engagement creation failed",
        "providerDialogId": dialog,
        "channelProviderId": CHANNEL_PROVIDER_ID,
        "accountId": ACCOUNT_ID,
    }
    typing = {key: value for key, value in typing_event(dialog).items() if key != "correlationId"}
    for event in (error, error, typing, typing):
        assert (await stack.axp_callback(event)).status_code == 200
    stored = await stack.rows(InboxEvent, InboxEvent.source == "axp.notification")
    kinds = [event.kind for event in stored]
    assert kinds.count("ENGAGEMENT_ERROR") == 1 and kinds.count("TYPING") == 1
    [handled] = await eventually(
        lambda: delivered(stack, "bridge.conversation_event"),
        what="the engagement error handled",
    )
    assert handled.result == {
        "skipped": "no delivery matches the correlationId",
        "reason": "AXP ENGAGEMENT_ERROR: Engagement creation failed",
    }


# --- 5. typing --------------------------------------------------------------------------------


async def test_axp_typing_is_not_relayed_by_default(stack: Stack) -> None:
    _ack, dialog = await open_conversation(stack)
    assert (await stack.axp_callback(typing_event(dialog))).status_code == 200
    stored = await stack.rows(InboxEvent, InboxEvent.source == "axp.notification")
    assert "TYPING" in [event.payload.get("eventType") for event in stored]
    await settled(stack)
    assert stack.nexus.calls("typing") == []
    assert await stack.deliveries(Delivery.destination == "nexus.typing") == []


async def test_typing_both_ways_when_enabled(database_url, engine, sessionmaker) -> None:
    async with start_stack(database_url, sessionmaker, nexus_typing_enabled=True) as stack:
        _ack, dialog = await open_conversation(stack)
        assert (await stack.axp_callback(typing_event(dialog))).status_code == 200
        [typing] = await eventually(lambda: stack.nexus.calls("typing"), what="Nexus typing")
        assert typing.document == {"channelId": CHANNEL, "from": CUSTOMER, "typing": True}
        assert typing.headers["x-ccid"] == CCID
        assert signed_by_channel(typing)
        # The customer typing in AXP is our own echo: never sent back.
        echo = typing_event(dialog, sender="CUSTOMER")
        assert (await stack.axp_callback(echo)).status_code == 200

        indicator = {"channelId": CHANNEL, "from": CHANNEL, "to": CUSTOMER, "typing": True}
        assert (await stack.nexus_webhook(indicator)).status_code == 200
        [axp_typing] = await eventually(lambda: stack.axp.typing, what="AXP :typing")
        [typing_delivery] = await stack.deliveries(Delivery.destination == "axp.typing")
        assert axp_typing == {
            "providerDialogId": dialog,
            "channelProviderId": CHANNEL_PROVIDER_ID,
            "businessAccountName": INTEGRATION_ID,
            "correlationId": f"dlv-{typing_delivery.id}",
        }
        await settled(stack)
        assert len(stack.nexus.calls("typing")) == 1
        assert len(stack.axp.messages) == 1, "a typing indicator is not a message"


# --- 6. loop guard ----------------------------------------------------------------------------


async def test_customer_messages_from_axp_never_go_back_to_nexus(stack: Stack) -> None:
    _ack, dialog = await open_conversation(stack)
    assert len(stack.nexus.calls("message")) == 1  # the agent's reply
    for status in ("SENT", "DELIVERED", "READ"):
        echo = axp_message_event(
            dialog, text="echo of the customer", sender="CUSTOMER", status=status
        )
        assert (await stack.axp_callback(echo)).status_code == 200
    await settled(stack)

    assert len(stack.nexus.calls("message")) == 1
    assert all("echo" not in call.document.get("text", "") for call in stack.nexus.calls("message"))
    # Stored (a status may matter), but only the agent's reply ever became a Nexus send.
    echoes = [
        event.payload["status"]
        for event in await stack.rows(InboxEvent, InboxEvent.source == "axp.notification")
        if event.payload.get("senderParticipantType") == "CUSTOMER"
        and text_of(event.payload) == "echo of the customer"
    ]
    assert sorted(echoes) == ["DELIVERED", "READ", "SENT"]
    [agent_send] = await stack.deliveries(Delivery.destination == "nexus.send_message")
    assert agent_send.payload["event"]["senderParticipantType"] == "AGENT"


# --- 7. unknown conversation ------------------------------------------------------------------


async def test_agent_message_for_unknown_conversation_is_stored_not_relayed(stack: Stack) -> None:
    event = axp_message_event("no-such-dialog_1", text="hello stranger")
    response = await stack.axp_callback(event)
    assert response.status_code == 200
    [stored] = await stack.rows(InboxEvent, InboxEvent.source == "axp.notification")
    assert stored.payload["messageId"] == event["messageId"]
    [delivery] = await settled(stack)
    assert (delivery.destination, delivery.status) == ("nexus.send_message", "delivered")
    assert delivery.result == {"skipped": "unknown conversation"}
    assert stack.nexus.received == []
    assert await stack.conversations() == []
    assert await stack.links() == []


# --- 8. closed conversation reopens as a new generation ---------------------------------------


async def test_customer_disconnect_closes_and_next_message_opens_generation_2(stack: Stack) -> None:
    _ack, first_dialog = await open_conversation(stack)
    left = participant_disconnected(first_dialog, "CUSTOMER")
    assert (await stack.axp_callback(left)).status_code == 200

    async def closed() -> bool:
        return [c.state for c in await stack.conversations()] == ["closed"]

    await eventually(closed, what="conversation closed")
    assert (await stack.nexus_webhook(nexus_message("back again"))).status_code == 200

    def second_send() -> dict[str, Any] | None:
        return next((s for s in stack.sends() if text_of(s) == "back again"), None)

    send = await eventually(second_send, what="second AXP send")
    first, second = await stack.conversations()
    assert (first.generation, first.state, first.provider_dialog_id) == (1, "closed", first_dialog)
    assert first.closed_reason and "CUSTOMER" in first.closed_reason
    assert (second.generation, second.state) == (2, "open")
    assert send["providerDialogId"] == second.provider_dialog_id != first_dialog


# --- 9. ordering under upstream errors ---------------------------------------------------------


async def test_100_nexus_messages_reach_axp_once_each_in_order_under_errors(stack: Stack) -> None:
    # This test is about the Nexus -> AXP partition; the agent's replies are the next test's.
    stack.axp.agent = False
    stack.axp.faults.error_rate = 0.2
    ids = [f"order-{index:03d}" for index in range(100)]
    for index, message_id in enumerate(ids):
        response = await stack.nexus_webhook(nexus_message(f"message {index}", id=message_id))
        assert response.status_code == 200

    await eventually(lambda: len(stack.axp.messages) >= 100, timeout_s=40, what="100 at AXP")
    deliveries = await settled(stack)
    assert [m["providerMessageId"] for m in stack.axp.messages] == ids
    assert {d.status for d in deliveries} == {"delivered"}
    # Each send AXP saw is one recorded attempt, so none went out behind the relay's back,
    # and each delivery succeeded exactly once (the simulator dedupes retries, so count here).
    attempts = await stack.rows(Attempt)
    sent = [r for r in stack.axp.recorded(method="POST") if r.path.endswith("/messages")]
    assert len(sent) == len(attempts) > 100, "the injected errors must have caused retries"
    successes = sorted(a.delivery_id for a in attempts if a.outcome == "delivered")
    assert successes == sorted(d.id for d in deliveries)


async def test_100_agent_messages_reach_nexus_once_each_in_order_under_errors(
    stack: Stack,
) -> None:
    _ack, dialog = await open_conversation(stack)
    stack.nexus.faults.error_rate = 0.2
    texts = [f"agent line {index:03d}" for index in range(100)]
    for text in texts:
        assert (await stack.axp_callback(axp_message_event(dialog, text=text))).status_code == 200

    def relayed() -> list[str]:
        return [
            c.document["text"]
            for c in stack.nexus.calls("message")
            if c.document.get("text", "").startswith("agent line")
        ]

    await eventually(lambda: len(relayed()) >= 100, timeout_s=40, what="100 at Nexus")
    deliveries = await settled(stack)
    # The simulator records only the calls it accepted: a duplicate would show here.
    assert relayed() == texts
    assert all(signed_by_channel(call) for call in stack.nexus.calls("message"))
    sends = [d for d in deliveries if d.destination == "nexus.send_message"]
    assert {d.status for d in sends} == {"delivered"}
    attempts = await stack.rows(Attempt)
    assert len([a for a in attempts if a.outcome == "retry"]) > 0
    assert len({d.partition_key for d in sends}) == 1


# --- 10. failure paths -------------------------------------------------------------------------


async def test_unknown_channel_is_a_404_problem(stack: Stack) -> None:
    # Correctly signed for a channel Nexus knows but the bridge has no mapping for.
    stack.nexus.add_channel("+15559999999", webhook_secret="other-secret-0123", api_secret="x")
    response = await stack.nexus_webhook(nexus_message("lost"), channel="+15559999999")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 404 and problem["title"] and problem["detail"]
    assert await stack.rows(InboxEvent) == []
    assert stack.axp.messages == []


async def test_axp_down_webhook_acknowledged_and_delivery_retries_until_back(stack: Stack) -> None:
    stack.axp.faults.error_rate = 1.0
    message = nexus_message("during the outage")
    response = await stack.nexus_webhook(message)
    assert response.status_code == 200
    [stored] = await stack.rows(InboxEvent, InboxEvent.source == "nexus.webhook")
    assert stored.ack == response.json()

    async def failed_three_times() -> bool:
        return len(await stack.rows(Attempt, Attempt.outcome == "retry")) >= 3

    await eventually(failed_three_times, what="three failed attempts")
    [delivery] = await stack.deliveries(Delivery.destination == "axp.send_message")
    # Still owed (waiting for its next attempt or being attempted), never given up on.
    assert delivery.status in UNFINISHED
    assert "503" in (delivery.last_error or "")
    assert stack.axp.messages == []

    stack.axp.faults.error_rate = 0.0
    await eventually(lambda: delivered(stack, "axp.send_message"), what="delivery delivered")
    assert [m["providerMessageId"] for m in stack.axp.messages] == [message["id"]]
    attempts = await stack.rows(Attempt, Attempt.delivery_id == delivery.id)
    assert [a.outcome for a in attempts][-1] == "delivered"
    assert {a.outcome for a in attempts[:-1]} == {"retry"} and len(attempts) > 3
    assert all(a.http_status == 503 for a in attempts[:-1])
