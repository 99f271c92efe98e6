"""The Open Messaging client on the wire (respx): token, bearer header, paths and bodies."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from channel_bridge.platforms.genesys_cloud.client import (
    GenesysCloudClient,
    build_genesys_cloud_http,
)
from channel_bridge.platforms.genesys_cloud.errors import GenesysCloudConfigError
from channel_bridge.platforms.genesys_cloud.schemas import (
    InboundChannel,
    InboundEvent,
    InboundMessage,
    InboundReceipt,
    IntegrationRequest,
    MessageEvent,
    ReceiptChannel,
    Typing,
    customer,
)
from channel_bridge.relay.errors import AuthError, PermanentError, RetryableError, ThrottledError
from tests.genesys_cloud.conftest import (
    API_BASE_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    INTEGRATION_ID,
    LOGIN_BASE_URL,
    fixture,
    gc_settings,
)

TOKEN_URL = f"{LOGIN_BASE_URL}/oauth/token"
INBOUND = f"{API_BASE_URL}/api/v2/conversations/messages/{INTEGRATION_ID}/inbound/open"
WHEN = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TokenServer:
    """Issues token-1, token-2, ... and yields to the loop so concurrent callers pile up."""

    def __init__(self, expires_in: int = 86400) -> None:
        self.issued = 0
        self.expires_in = expires_in

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        self.issued += 1
        return httpx.Response(
            200,
            json={
                "access_token": f"token-{self.issued}",
                "token_type": "bearer",
                "expires_in": self.expires_in,
            },
        )


def message(n: int) -> InboundMessage:
    return InboundMessage(
        channel=InboundChannel(messageId=f"axp-m-{n}", from_=customer("+15551230000"), time=WHEN),
        text=f"hello {n}",
    )


def answer(n: int = 1) -> httpx.Response:
    return httpx.Response(200, json={"id": f"gc-{n}", "channel": {}, "type": "Text"})


def http(clock: FakeClock | None = None) -> httpx.AsyncClient:
    return build_genesys_cloud_http(gc_settings(), clock=clock or FakeClock())


@respx.mock
async def test_a_message_carries_the_bearer_token_and_the_normalized_body() -> None:
    token_route = respx.post(TOKEN_URL).mock(side_effect=TokenServer())
    route = respx.post(f"{INBOUND}/message").mock(return_value=answer())
    async with http() as client:
        result = await GenesysCloudClient(client).send_message(INTEGRATION_ID, message(1))
    assert result.id == "gc-1"
    token_request = token_route.calls[0].request
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_request.headers["authorization"] == f"Basic {basic}"
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_request.content.decode()) == {"grant_type": ["client_credentials"]}
    sent = route.calls[0].request
    assert sent.headers["authorization"] == "Bearer token-1"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {
        "channel": {
            "messageId": "axp-m-1",
            "from": {"id": "+15551230000", "idType": "Opaque", "nickname": "+15551230000"},
            "time": "2026-12-02T01:00:00Z",
        },
        "text": "hello 1",
    }


@respx.mock
async def test_concurrent_calls_share_one_token_and_reuse_it() -> None:
    tokens = TokenServer()
    token_route = respx.post(TOKEN_URL).mock(side_effect=tokens)
    route = respx.post(f"{INBOUND}/message").mock(return_value=answer())
    async with http() as client:
        gc = GenesysCloudClient(client)
        await asyncio.gather(*[gc.send_message(INTEGRATION_ID, message(n)) for n in range(200)])
        await gc.send_message(INTEGRATION_ID, message(201))
    assert token_route.call_count == 1
    assert route.call_count == 201
    assert {call.request.headers["authorization"] for call in route.calls} == {"Bearer token-1"}


@respx.mock
async def test_the_token_is_refreshed_once_past_the_refresh_ratio() -> None:
    clock = FakeClock()
    token_route = respx.post(TOKEN_URL).mock(side_effect=TokenServer(expires_in=1000))
    respx.post(f"{INBOUND}/message").mock(return_value=answer())
    async with http(clock) as client:
        gc = GenesysCloudClient(client)
        await gc.send_message(INTEGRATION_ID, message(1))
        clock.now += 799
        await gc.send_message(INTEGRATION_ID, message(2))
        assert token_route.call_count == 1
        clock.now += 2
        await asyncio.gather(*[gc.send_message(INTEGRATION_ID, message(n)) for n in range(50)])
    assert token_route.call_count == 2


@respx.mock
async def test_a_401_drops_the_token_and_retries_once() -> None:
    token_route = respx.post(TOKEN_URL).mock(side_effect=TokenServer())
    route = respx.post(f"{INBOUND}/message").mock(
        side_effect=[httpx.Response(401, json={"code": "bad.credentials"}), answer()]
    )
    async with http() as client:
        await GenesysCloudClient(client).send_message(INTEGRATION_ID, message(1))
    assert token_route.call_count == 2
    # httpx re-sends the same request object: the last call shows the fresh token.
    assert route.call_count == 2
    assert route.calls[-1].request.headers["authorization"] == "Bearer token-2"


@respx.mock
async def test_a_second_401_is_an_auth_error() -> None:
    respx.post(TOKEN_URL).mock(side_effect=TokenServer())
    respx.post(f"{INBOUND}/message").mock(return_value=httpx.Response(401))
    async with http() as client:
        with pytest.raises(AuthError):
            await GenesysCloudClient(client).send_message(INTEGRATION_ID, message(1))


@respx.mock
async def test_event_and_receipt_bodies_and_paths() -> None:
    respx.post(TOKEN_URL).mock(side_effect=TokenServer())
    event_route = respx.post(f"{INBOUND}/event").mock(return_value=httpx.Response(202))
    receipt_route = respx.post(f"{INBOUND}/receipt").mock(return_value=httpx.Response(202))
    async with http() as client:
        gc = GenesysCloudClient(client)
        await gc.send_event(
            INTEGRATION_ID,
            InboundEvent(
                channel=InboundChannel(from_=customer("+15551230000"), time=WHEN),
                events=[MessageEvent(eventType="Typing", typing=Typing(type="On"))],
            ),
        )
        await gc.send_receipt(
            INTEGRATION_ID,
            InboundReceipt(
                id="5d8a1c0e7b2f4e3a9c6d1b0a8f7e6d5c",
                channel=ReceiptChannel(
                    to=customer("messaging-user@externalservice.com").model_copy(
                        update={"idType": "email", "nickname": None}
                    ),
                    time=datetime(2023, 1, 21, 16, 47, 8, 592000, tzinfo=UTC),
                ),
                status="Delivered",
            ),
        )
    assert json.loads(event_route.calls[0].request.content) == {
        "channel": {
            "from": {"id": "+15551230000", "idType": "Opaque", "nickname": "+15551230000"},
            "time": "2026-12-02T01:00:00Z",
        },
        "events": [{"eventType": "Typing", "typing": {"type": "On"}}],
    }
    sent = json.loads(receipt_route.calls[0].request.content)
    published = fixture("inbound_receipt_delivered.json")
    sent["channel"]["time"] = published["channel"]["time"]  # same instant, other spelling
    assert sent == published


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, ThrottledError), (503, RetryableError), (400, PermanentError), (404, PermanentError)],
)
@respx.mock
async def test_failures_are_classified_for_the_worker(status: int, error: type) -> None:
    respx.post(TOKEN_URL).mock(side_effect=TokenServer())
    respx.post(f"{INBOUND}/message").mock(
        return_value=httpx.Response(
            status,
            json={"code": "some.code", "message": "nope"},
            headers={"Retry-After": "7"},
        )
    )
    async with http() as client:
        with pytest.raises(error) as raised:
            await GenesysCloudClient(client).send_message(INTEGRATION_ID, message(1))
    assert raised.value.http_status == status
    assert raised.value.retry_after_s == 7.0


@respx.mock
async def test_rejected_credentials_are_permanent_and_the_secret_is_not_in_the_error() -> None:
    respx.post(TOKEN_URL).mock(return_value=httpx.Response(400, json={"error": "invalid_client"}))
    route = respx.post(f"{INBOUND}/message").mock(return_value=answer())
    async with http() as client:
        with pytest.raises(PermanentError) as raised:
            await GenesysCloudClient(client).send_message(INTEGRATION_ID, message(1))
    assert route.call_count == 0
    assert CLIENT_SECRET not in str(raised.value)


@respx.mock
async def test_create_integration() -> None:
    respx.post(TOKEN_URL).mock(side_effect=TokenServer())
    route = respx.post(f"{API_BASE_URL}/api/v2/conversations/messaging/integrations/open").mock(
        return_value=httpx.Response(200, json={"id": INTEGRATION_ID, "name": "bridge"})
    )
    request = IntegrationRequest(
        name="bridge",
        outboundNotificationWebhookUrl="https://bridge.test/genesys-cloud/integrations/x/webhook",
        outboundNotificationWebhookSignatureSecretToken="s" * 16,
    )
    async with http() as client:
        created = await GenesysCloudClient(client).create_integration(request)
    assert created.id == INTEGRATION_ID
    assert json.loads(route.calls[0].request.content) == {
        "name": "bridge",
        "outboundNotificationWebhookUrl": "https://bridge.test/genesys-cloud/integrations/x/webhook",
        "outboundNotificationWebhookSignatureSecretToken": "s" * 16,
    }


def test_no_credentials_no_client() -> None:
    with pytest.raises(GenesysCloudConfigError):
        build_genesys_cloud_http(gc_settings(genesys_cloud_client_secret=None))


MEDIA_URL = "https://media.genesys.example/attachments/parcel.png?sig=abc"


@respx.mock
async def test_an_attachment_is_spooled_within_the_media_budget_without_credentials() -> None:
    from channel_bridge.media import MediaBudget, MediaTransfers

    route = respx.get(MEDIA_URL).mock(
        return_value=httpx.Response(
            200, content=b"\x89PNG" * 100, headers={"content-type": "image/png"}
        )
    )
    budget = MediaBudget(10_000)
    transfers = MediaTransfers(budget=budget, memory_bytes=64)
    async with httpx.AsyncClient() as media_http:
        gc = GenesysCloudClient(
            httpx.AsyncClient(), media_http=media_http, media_max_bytes=1_000, transfers=transfers
        )
        spool = await gc.fetch_media(MEDIA_URL)
        with spool:
            assert spool.read() == b"\x89PNG" * 100
            assert spool.content_type == "image/png"
            # Past 64 bytes it lives on disk, and the declared length is held from the budget.
            assert spool.on_disk
            assert budget.in_use == 400
        assert budget.in_use == 0
    assert "authorization" not in route.calls.last.request.headers


@respx.mock
async def test_an_attachment_over_the_limit_is_refused_and_releases_its_reservation() -> None:
    from channel_bridge.media import MediaBudget, MediaTransfers

    respx.get(MEDIA_URL).mock(return_value=httpx.Response(200, content=b"x" * 2_000))
    budget = MediaBudget(10_000)
    async with httpx.AsyncClient() as media_http:
        gc = GenesysCloudClient(
            httpx.AsyncClient(),
            media_http=media_http,
            media_max_bytes=1_000,
            transfers=MediaTransfers(budget=budget, memory_bytes=64),
        )
        with pytest.raises(PermanentError, match="exceeds 1000"):
            await gc.fetch_media(MEDIA_URL)
    assert budget.in_use == 0
