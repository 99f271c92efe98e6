"""Token auth: one token for many concurrent calls, one refresh per expiry, one retry per 401."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr

from channel_bridge.platforms.axp.auth import (
    AxpNotConfigured,
    AxpTokenAuth,
    TokenCache,
    build_axp_http,
)
from channel_bridge.platforms.axp.client import AxpMessagingClient
from channel_bridge.platforms.axp.errors import AxpAuthError, AxpCredentialsError
from channel_bridge.platforms.axp.schemas import BodyElement, ElementText, SendAsyncMessage
from channel_bridge.relay.errors import (
    AuthError,
    PermanentError,
    RetryableError,
    ThrottledError,
)
from tests.axp.conftest import (
    ACCOUNT_ID,
    APP_KEY,
    AXP_BASE_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    axp_settings,
    validate_against,
)

TOKEN_URL = f"{AXP_BASE_URL}/api/auth/v1/{ACCOUNT_ID}/protocol/openid-connect/token"
SEND_URL = f"{AXP_BASE_URL}/api/digital/custom-messaging/v1/accounts/{ACCOUNT_ID}/messages"
SEND_ANSWER = {"messageId": "m-1", "engagementId": "e-1", "dialogId": "d-1", "status": "SENT"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message(n: int) -> SendAsyncMessage:
    return SendAsyncMessage(
        channelProviderId="provider-1",
        channelId="Messaging",
        businessAccountName="integration-1",
        customerIdentifiers={"phoneNumbers": ["+15551230000"]},
        body=BodyElement(elementType="text", elementText=ElementText(text=f"hi {n}")),
        providerDialogId="dialog-1",
        providerMessageId=f"pm-{n}",
        correlationId=f"dlv-{n}",
    )


class TokenServer:
    """Issues token-1, token-2, ... and yields to the loop so concurrent callers pile up."""

    def __init__(self, expires_in: int = 900) -> None:
        self.issued = 0
        self.expires_in = expires_in

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        self.issued += 1
        return httpx.Response(
            200,
            json={
                "access_token": f"token-{self.issued}",
                "expires_in": self.expires_in,
                "refresh_token": "r",
            },
        )


def client(clock: FakeClock | None = None) -> httpx.AsyncClient:
    return build_axp_http(axp_settings(), cache=TokenCache(), clock=clock or FakeClock())


@respx.mock
async def test_concurrent_sends_share_one_token_request() -> None:
    tokens = TokenServer()
    token_route = respx.post(TOKEN_URL).mock(side_effect=tokens)
    send_route = respx.post(SEND_URL).mock(return_value=httpx.Response(200, json=SEND_ANSWER))
    async with client() as http:
        messaging = AxpMessagingClient(http, ACCOUNT_ID)
        results = await asyncio.gather(*[messaging.send_message(message(n)) for n in range(1000)])
    assert token_route.call_count == 1
    assert send_route.call_count == 1000
    assert {r.message_id for r in results} == {"m-1"}
    for call in send_route.calls:
        assert call.request.headers["authorization"] == "Bearer token-1"
        assert call.request.headers["appkey"] == APP_KEY
    token_request = token_route.calls[0].request
    assert token_request.headers["appkey"] == APP_KEY
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = {k: v[0] for k, v in parse_qs(token_request.content.decode()).items()}
    assert form == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    validate_against("generate_token_request.schema.json", form)


@respx.mock
async def test_expiry_causes_exactly_one_refresh_for_the_next_burst() -> None:
    clock = FakeClock()
    tokens = TokenServer(expires_in=900)
    token_route = respx.post(TOKEN_URL).mock(side_effect=tokens)
    send_route = respx.post(SEND_URL).mock(return_value=httpx.Response(200, json=SEND_ANSWER))
    async with client(clock) as http:
        messaging = AxpMessagingClient(http, ACCOUNT_ID)
        await asyncio.gather(*[messaging.send_message(message(n)) for n in range(100)])
        clock.now += 900 * 0.8 - 1  # still inside the 80 % window: no refresh
        await asyncio.gather(*[messaging.send_message(message(n)) for n in range(100)])
        assert token_route.call_count == 1
        clock.now += 2  # past 80 % of expires_in
        await asyncio.gather(*[messaging.send_message(message(n)) for n in range(100)])
    assert token_route.call_count == 2
    used = [call.request.headers["authorization"] for call in send_route.calls]
    assert used[:200] == ["Bearer token-1"] * 200
    assert used[200:] == ["Bearer token-2"] * 100


@respx.mock
async def test_a_401_refreshes_once_and_retries_once() -> None:
    token_route = respx.post(TOKEN_URL).mock(side_effect=TokenServer())
    send_route = respx.post(SEND_URL).mock(
        side_effect=[
            httpx.Response(401, json={"title": "Unauthorized", "status": 401}),
            httpx.Response(200, json=SEND_ANSWER),
        ]
    )
    async with client() as http:
        result = await AxpMessagingClient(http, ACCOUNT_ID).send_message(message(1))
    assert result.message_id == "m-1"
    assert token_route.call_count == 2
    assert [c.request.headers["authorization"] for c in send_route.calls] == [
        "Bearer token-1",
        "Bearer token-2",
    ]
    assert send_route.calls[0].request.content == send_route.calls[1].request.content


@respx.mock
async def test_concurrent_401s_on_one_token_cause_one_refresh() -> None:
    token_route = respx.post(TOKEN_URL).mock(side_effect=TokenServer())

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer token-1":
            return httpx.Response(401)
        return httpx.Response(200, json=SEND_ANSWER)

    respx.post(SEND_URL).mock(side_effect=answer)
    async with client() as http:
        messaging = AxpMessagingClient(http, ACCOUNT_ID)
        await asyncio.gather(*[messaging.send_message(message(n)) for n in range(50)])
    assert token_route.call_count == 2


@respx.mock
async def test_a_second_401_is_an_auth_error() -> None:
    token_route = respx.post(TOKEN_URL).mock(side_effect=TokenServer())
    send_route = respx.post(SEND_URL).mock(
        return_value=httpx.Response(
            401,
            json={
                "type": "https://developers.avayacloud.com/onecloud-ccaas/docs/error-handling#unauthorized",
                "title": "Unauthorized",
                "status": 401,
                "detail": "This operation requires authentication.",
            },
            headers={"content-type": "application/problem+json"},
        )
    )
    async with client() as http:
        with pytest.raises(AxpAuthError) as caught:
            await AxpMessagingClient(http, ACCOUNT_ID).send_message(message(1))
    assert isinstance(caught.value, AuthError)
    assert caught.value.http_status == 401
    assert "Unauthorized" in str(caught.value)
    assert token_route.call_count == 2
    assert send_route.call_count == 2


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, AxpCredentialsError),
        (400, AxpCredentialsError),
        (403, AxpCredentialsError),
    ],
)
@respx.mock
async def test_rejected_credentials_are_permanent(status: int, expected: type) -> None:
    respx.post(TOKEN_URL).mock(return_value=httpx.Response(status, json={"title": "Unauthorized"}))
    send_route = respx.post(SEND_URL).mock(return_value=httpx.Response(200, json=SEND_ANSWER))
    async with client() as http:
        with pytest.raises(expected) as caught:
            await AxpMessagingClient(http, ACCOUNT_ID).send_message(message(1))
    assert isinstance(caught.value, PermanentError) and isinstance(caught.value, AuthError)
    assert CLIENT_SECRET not in str(caught.value)
    assert send_route.call_count == 0


@respx.mock
async def test_token_endpoint_outage_is_retryable_and_timeout_is_throttled() -> None:
    route = respx.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(503, json={"title": "Server Error", "status": 503}),
            httpx.ReadTimeout("slow"),
            httpx.ConnectError("refused"),
        ]
    )
    async with client() as http:
        messaging = AxpMessagingClient(http, ACCOUNT_ID)
        with pytest.raises(RetryableError) as first:
            await messaging.send_message(message(1))
        assert not isinstance(first.value, ThrottledError)
        assert first.value.http_status == 503
        with pytest.raises(ThrottledError):
            await messaging.send_message(message(2))
        with pytest.raises(RetryableError):
            await messaging.send_message(message(3))
    assert route.call_count == 3


def test_missing_settings_name_the_variable() -> None:
    with pytest.raises(AxpNotConfigured, match="BRIDGE_AXP_APP_KEY"):
        build_axp_http(axp_settings(axp_app_key=None))


def test_refresh_ratio_must_be_a_fraction() -> None:
    with pytest.raises(ValueError):
        AxpTokenAuth(
            token_url_base=AXP_BASE_URL,
            account_id=ACCOUNT_ID,
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            app_key=SecretStr(APP_KEY),
            token_http=httpx.AsyncClient(),
            refresh_ratio=1.5,
        )
