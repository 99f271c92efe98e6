"""Custom Messaging client against the simulator; every request body checked against the spec."""

from __future__ import annotations

import pytest

from channel_bridge.platforms.axp.errors import AxpApiError, AxpPermanentError
from channel_bridge.platforms.axp.platform import AxpPlatform
from channel_bridge.platforms.axp.schemas import (
    AttachmentContentIdMap,
    BodyElement,
    ElementText,
    MessageHeaders,
    SendAsyncMessage,
)
from channel_bridge.relay.errors import PermanentError, RetryableError, ThrottledError
from channel_bridge.sandbox.axp import AxpSimulator
from tests.axp.conftest import ACCOUNT_ID, APP_KEY, validate_against

BASE = f"/api/digital/custom-messaging/v1/accounts/{ACCOUNT_ID}"


def customer_message(n: int = 1, **extra: object) -> SendAsyncMessage:
    return SendAsyncMessage(
        channelProviderId="591c2529-c3a3-4062-a213-b239c18f543b",
        channelId="Messaging",
        businessAccountName="e94e278d-72e7-48cc-80fc-dba9f8dd1c36",
        customerIdentifiers={"phoneNumbers": ["+15551230000"]},
        body=BodyElement(
            elementType="text", elementText=ElementText(text="hello", textFormat="PLAINTEXT")
        ),
        headers=MessageHeaders(
            sourceType="custom:nexus", sourceAddress="+15559870000", from_="+15551230000"
        ),
        senderName="+15551230000",
        providerSenderId="+15551230000",
        providerDialogId="+15551230000_+15559870000_SMS",
        providerMessageId=f"nexus-msg-{n}",
        correlationId=f"dlv-{n}",
        **extra,
    )


async def test_send_returns_ids_and_the_body_matches_the_spec(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    first = await platform.messaging.send_message(customer_message(1))
    second = await platform.messaging.send_message(customer_message(2))
    assert first.message_id and first.engagement_id and first.dialog_id
    assert (second.engagement_id, second.dialog_id) == (first.engagement_id, first.dialog_id)
    sends = sim.recorded(method="POST", path_contains="/messages")
    assert [r.path for r in sends] == [f"{BASE}/messages"] * 2
    for recorded in sends:
        validate_against("send_async_message.schema.json", recorded.json)
        assert recorded.headers["appkey"] == APP_KEY
        assert recorded.headers["authorization"].startswith("Bearer ")
        assert recorded.headers["content-type"] == "application/json"
    assert sends[0].json["correlationId"] == "dlv-1"
    assert sends[0].json["providerMessageId"] == "nexus-msg-1"
    assert sends[0].json["headers"]["from"] == "+15551230000"
    assert sim.token_requests == 1


async def test_a_send_with_attachments_matches_the_spec(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    media_id = await platform.media.upload(b"\x89PNG....", "car.png", "image/png")
    message = customer_message(3, attachments=[AttachmentContentIdMap(attachmentId=media_id)])
    message = message.model_copy(update={"body": BodyElement(elementType="image")})
    await platform.messaging.send_message(message)
    recorded = sim.recorded(method="POST", path_contains="/messages")[-1]
    validate_against("send_async_message.schema.json", recorded.json)
    assert recorded.json["attachments"] == [{"attachmentId": media_id}]
    assert sim.messages[-1]["attachments"][0]["name"] == "car.png"


async def test_send_without_correlation_or_provider_message_id_is_refused_locally(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    with pytest.raises(AxpPermanentError):
        await platform.messaging.send_message(
            customer_message(1).model_copy(update={"correlationId": None})
        )
    with pytest.raises(AxpPermanentError):
        await platform.messaging.send_message(
            customer_message(1).model_copy(update={"providerMessageId": None})
        )
    assert sim.recorded() == []


async def test_typing_and_disconnect_match_the_spec(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    await platform.messaging.typing(
        "dialog/with+odd chars",
        channel_provider_id="provider-1",
        business_account_name="integration-1",
        correlation_id="dlv-9",
    )
    echo = await platform.messaging.disconnect(
        "dialog-42",
        channel_provider_id="provider-1",
        business_account_name="integration-1",
        reason="USER_INACTIVE",
        correlation_id="dlv-10",
    )
    typing, disconnect = sim.recorded()
    assert typing.path == f"{BASE}/provider-dialogs/dialog/with+odd chars:typing"
    assert typing.json == {
        "channelProviderId": "provider-1",
        "businessAccountName": "integration-1",
        "correlationId": "dlv-9",
    }
    validate_against("typing_indicator.schema.json", typing.json)
    assert disconnect.path == f"{BASE}/provider-dialogs/dialog-42:disconnect"
    validate_against("disconnect_provider_dialog.schema.json", disconnect.json)
    assert disconnect.json["reason"] == "USER_INACTIVE"
    assert echo["providerDialogId"] == "dialog-42"
    assert sim.typing[0]["providerDialogId"] == "dialog/with+odd chars"


async def test_provider_dialog_id_length_is_checked_before_sending(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    with pytest.raises(PermanentError):
        await platform.messaging.typing(
            "ab", channel_provider_id="provider-1", business_account_name="integration-1"
        )
    assert sim.recorded() == []


async def test_vendor_400_surfaces_violations(platform: AxpPlatform, sim: AxpSimulator) -> None:
    message = customer_message(1).model_copy(update={"businessAccountName": "ok-name"})
    sim.faults.fail_next = [400]
    with pytest.raises(AxpApiError) as caught:
        await platform.messaging.send_message(message)
    assert isinstance(caught.value, PermanentError)


async def test_throttling_carries_retry_after(platform: AxpPlatform, sim: AxpSimulator) -> None:
    sim.faults.throttle_next = 1
    sim.faults.retry_after = "12"
    with pytest.raises(ThrottledError) as caught:
        await platform.messaging.send_message(customer_message(1))
    assert caught.value.retry_after_s == 12.0 and caught.value.http_status == 429
    sim.faults.fail_next = [503]
    with pytest.raises(RetryableError):
        await platform.messaging.send_message(customer_message(1))
    assert (await platform.messaging.send_message(customer_message(1))).message_id


async def test_revoked_token_is_replaced_transparently(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    await platform.messaging.send_message(customer_message(1))
    sim.revoke_tokens()
    await platform.messaging.send_message(customer_message(2))
    assert sim.token_requests == 2
    assert len(sim.messages) == 2
