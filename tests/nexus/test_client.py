"""NexusClient: exact headers, signature over the exact bytes on the wire, typed errors."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from pydantic import SecretStr

from channel_bridge.platforms.nexus.client import NexusClient
from channel_bridge.platforms.nexus.errors import NexusApiError
from channel_bridge.platforms.nexus.fields import FieldMap
from channel_bridge.platforms.nexus.schemas import MediaItem, build_inbound_message, build_receipt
from channel_bridge.platforms.nexus.signing import verify
from channel_bridge.relay.errors import (
    AuthError,
    PermanentError,
    RetryableError,
    ThrottledError,
    parse_retry_after,
)
from channel_bridge.sandbox.nexus import Faults, NexusSandbox, create_nexus_sandbox
from channel_bridge.settings import Settings
from tests.conftest import FIXTURES

BASE = "https://nexus.example-tenant.test"
CCID = "45acae06-6b7c-4f97-9c76-471d0c1f2e3a"
API_SECRET = SecretStr("api-secret-one-7c1a")
CHANNEL = "+16504661149"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def make(**overrides) -> Settings:
    values = {
        "nexus_base_url": BASE,
        "nexus_ccid": CCID,
        "nexus_api_key": "nexus-api-key-0b1c2d3e",
        "env": "dev",
        "sandbox": False,
    }
    values.update(overrides)
    return Settings(**values)


def message(settings: Settings) -> dict:
    return build_inbound_message(
        FieldMap.from_settings(settings),
        message_id="axp-msg-1",
        channel_id=CHANNEL,
        from_address="+15551230001",
        to_address=CHANNEL,
        text="Héllo — is my order late?",
        media=[MediaItem(url="genesys://nexus/abc", content_type="image/png", filename="a.png")],
        timestamp="2026-11-24T01:00:00Z",
    )


@respx.mock
async def test_send_inbound_message_headers_and_signature_over_wire_bytes() -> None:
    settings = make()
    route = respx.post(f"{BASE}/nexus/v3/channels/+16504661149/messages").mock(
        return_value=httpx.Response(
            200, json={"status": {"code": 0, "message": "OK"}, "data": {"id": "n-1"}}
        )
    )
    async with httpx.AsyncClient() as http:
        result = await NexusClient(http, settings).post_to_nexus(
            CHANNEL, API_SECRET, message(settings), trace_id=TRACE
        )
    assert result == {"id": "n-1"}
    request = route.calls.last.request
    assert request.url.raw_path == b"/nexus/v3/channels/+16504661149/messages"
    wire = request.content
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-ccid"] == CCID
    assert request.headers["x-b3-traceid"] == TRACE
    assert request.headers["x-api-key"] == "nexus-api-key-0b1c2d3e"
    assert verify(wire, request.headers["x-hub-signature"], [API_SECRET], "hex")
    assert json.loads(wire) == {
        "id": "axp-msg-1",
        "channelId": CHANNEL,
        "from": "+15551230001",
        "to": CHANNEL,
        "text": "Héllo — is my order late?",
        "media": [{"url": "genesys://nexus/abc", "contentType": "image/png", "filename": "a.png"}],
        "timestamp": "2026-11-24T01:00:00Z",
    }


@respx.mock
async def test_base64_setting_signs_base64_and_no_api_key_header_when_unset() -> None:
    settings = make(nexus_signature_encoding="base64", nexus_api_key=None)
    route = respx.post(f"{BASE}/nexus/v3/channels/{CHANNEL}/messages").mock(
        return_value=httpx.Response(200, json={"status": {"code": 0}, "data": {}})
    )
    async with httpx.AsyncClient() as http:
        await NexusClient(http, settings).post_to_nexus(CHANNEL, API_SECRET, {"text": "x"})
    request = route.calls.last.request
    assert "x-api-key" not in request.headers
    assert verify(request.content, request.headers["x-hub-signature"], [API_SECRET], "base64")
    assert len(request.headers["x-b3-traceid"]) == 32  # generated when none is given


@respx.mock
async def test_receipt_uses_the_receipts_path_setting() -> None:
    settings = make(
        nexus_receipts_path="/nexus/v3/channels/{channelId}/status",
        nexus_field_receipt_message_id="id",
    )
    route = respx.post(f"{BASE}/nexus/v3/channels/{CHANNEL}/status").mock(
        return_value=httpx.Response(200)
    )
    receipt = build_receipt(FieldMap.from_settings(settings), message_id="nx-1", status="delivered")
    async with httpx.AsyncClient() as http:
        assert await NexusClient(http, settings).send_receipt(CHANNEL, API_SECRET, receipt) == {}
    request = route.calls.last.request
    assert json.loads(request.content) == {"id": "nx-1", "status": "delivered"}
    assert verify(request.content, request.headers["x-hub-signature"], [API_SECRET])


@respx.mock
async def test_typing_is_off_by_default() -> None:
    route = respx.post(f"{BASE}/nexus/v3/channels/{CHANNEL}/typing").mock(
        return_value=httpx.Response(200)
    )
    async with httpx.AsyncClient() as http:
        assert (
            await NexusClient(http, make()).send_typing(CHANNEL, API_SECRET, {"typing": True})
            is None
        )
        await NexusClient(http, make(nexus_typing_enabled=True)).send_typing(
            CHANNEL, API_SECRET, {"typing": True}
        )
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after"),
    [
        (429, {"Retry-After": "7"}, ThrottledError, 7.0),
        (503, {}, RetryableError, None),
        (500, {}, RetryableError, None),
        (401, {}, AuthError, None),
        (400, {}, PermanentError, None),
        (404, {}, PermanentError, None),
    ],
)
@respx.mock
async def test_error_responses_become_relay_errors(status, headers, expected, retry_after) -> None:
    respx.post(f"{BASE}/nexus/v3/channels/{CHANNEL}/messages").mock(
        return_value=httpx.Response(
            status,
            headers=headers,
            json={"status": {"code": 4001, "message": "channel is not provisioned"}},
        )
    )
    async with httpx.AsyncClient() as http:
        with pytest.raises(expected) as caught:
            await NexusClient(http, make()).post_to_nexus(CHANNEL, API_SECRET, {"text": "x"})
    error = caught.value
    assert isinstance(error, NexusApiError)
    assert error.http_status == status and error.retry_after_s == retry_after
    assert error.nexus_code == 4001 and "channel is not provisioned" in str(error)


@respx.mock
async def test_timeouts_and_connect_errors_are_retryable() -> None:
    route = respx.post(f"{BASE}/nexus/v3/channels/{CHANNEL}/messages")
    async with httpx.AsyncClient() as http:
        client = NexusClient(http, make())
        route.side_effect = httpx.ReadTimeout("slow")
        with pytest.raises(ThrottledError):
            await client.post_to_nexus(CHANNEL, API_SECRET, {"text": "x"})
        route.side_effect = httpx.ConnectError("refused")
        with pytest.raises(RetryableError):
            await client.post_to_nexus(CHANNEL, API_SECRET, {"text": "x"})


async def test_missing_settings_fail_permanently_without_a_request() -> None:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: pytest.fail("no request"))
    ) as http:
        for settings in (make(nexus_base_url=None), make(nexus_ccid=None)):
            with pytest.raises(PermanentError, match="BRIDGE_NEXUS_"):
                await NexusClient(http, settings).post_to_nexus(CHANNEL, API_SECRET, {"text": "x"})


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None


@respx.mock
async def test_upload_media_signs_the_multipart_body_sent() -> None:
    settings = make()
    example = json.loads((FIXTURES / "nexus" / "upload_response.json").read_text())
    route = respx.post(f"{BASE}/nexus/v3/channels/{CHANNEL}/media").mock(
        return_value=httpx.Response(200, json=example)
    )
    async with httpx.AsyncClient() as http:
        result = await NexusClient(http, settings).upload_media(
            CHANNEL, API_SECRET, b"\xff\xd8\xff\xe0", "MyImage", "image/jpeg", trace_id=TRACE
        )
    assert result.media_id == "bb4a9f86-dbbb-4464-a669-650da94fbad6"
    assert result.url == "genesys://nexus/bb4a9f86-dbbb-4464-a669-650da94fbad6"
    assert (result.filename, result.mimetype, result.length) == ("MyImage", "image/jpeg", 0)
    request = route.calls.last.request
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert (
        b'name="file"; filename="MyImage"' in request.content
        and b"\xff\xd8\xff\xe0" in request.content
    )
    assert verify(request.content, request.headers["x-hub-signature"], [API_SECRET])
    assert request.headers["x-ccid"] == CCID and request.headers["x-b3-traceid"] == TRACE


@pytest.mark.parametrize("mode", ["body", "file"])
@respx.mock
async def test_upload_media_streams_a_spool_from_disk_and_signs_what_is_sent(mode: str) -> None:
    settings = make(nexus_multipart_signature=mode)
    example = json.loads((FIXTURES / "nexus" / "upload_response.json").read_text())
    route = respx.post(f"{BASE}/nexus/v3/channels/{CHANNEL}/media").mock(
        return_value=httpx.Response(200, json=example)
    )
    content = bytes(range(256)) * 12_000  # 3 MB: past the 1 MiB spool threshold
    respx.get(f"{BASE}/nexus/v3/media/big").mock(
        return_value=httpx.Response(200, content=content, headers={"content-type": "video/mp4"})
    )
    async with httpx.AsyncClient() as http:
        client = NexusClient(http, settings)
        async with await client.fetch_media("genesys://nexus/big") as spool:
            assert spool.on_disk and spool.size == len(content)
            assert spool.content_type == "video/mp4"
            await client.upload_media(CHANNEL, API_SECRET, spool, "clip.mp4", "video/mp4")
    request = route.calls.last.request
    assert int(request.headers["content-length"]) == len(request.content) > len(content)
    assert content in request.content
    signed = request.content if mode == "body" else content
    assert verify(signed, request.headers["x-hub-signature"], [API_SECRET])


@pytest.mark.parametrize("status", [301, 302, 304, 307])
@respx.mock
async def test_a_redirect_on_a_media_fetch_is_an_error(status: int) -> None:
    respx.get(f"{BASE}/nexus/v3/media/moved").mock(
        return_value=httpx.Response(status, headers={"location": f"{BASE}/elsewhere"})
    )
    async with httpx.AsyncClient() as http:
        with pytest.raises(PermanentError, match=f"HTTP {status}"):
            await NexusClient(http, make()).fetch_media("genesys://nexus/moved")


@respx.mock
async def test_fetch_media_only_from_nexus_and_size_limited() -> None:
    settings = make(nexus_media_max_bytes=10)
    respx.get(f"{BASE}/nexus/v3/media/abc").mock(
        return_value=httpx.Response(200, content=b"0123456789")
    )
    respx.get(f"{BASE}/files/big").mock(return_value=httpx.Response(200, content=b"x" * 11))
    elsewhere = respx.get("https://attacker.test/steal")
    async with httpx.AsyncClient() as http:
        client = NexusClient(http, settings)
        with await client.fetch_media("genesys://nexus/abc") as spool:
            assert spool.read() == b"0123456789"
        with pytest.raises(PermanentError, match="MEDIA_MAX_BYTES"):
            await client.fetch_media(f"{BASE}/files/big")
        for url in (
            "https://attacker.test/steal",
            "http://nexus.example-tenant.test/x",
            "file:///etc/passwd",
            "genesys://nexus/../x/y",
        ):
            with pytest.raises(PermanentError):
                await client.fetch_media(url)
    assert elsewhere.call_count == 0


# --- against the simulator, which verifies like Nexus does -----------------------------------


def sandbox_client(sandbox: NexusSandbox, settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_nexus_sandbox(sandbox, settings))
    )


async def test_simulator_accepts_signed_calls_and_refuses_a_wrong_secret() -> None:
    settings = make(nexus_api_key=None)
    sandbox = NexusSandbox(ccid=CCID)
    sandbox.add_channel(CHANNEL, webhook_secret="wh", api_secret=API_SECRET.get_secret_value())
    async with sandbox_client(sandbox, settings) as http:
        client = NexusClient(http, settings)
        await client.post_to_nexus(CHANNEL, API_SECRET, message(settings), trace_id=TRACE)
        uploaded = await client.upload_media(CHANNEL, API_SECRET, b"PNG...", "a.png", "image/png")
        with await client.fetch_media(uploaded.url) as spool:
            assert spool.read() == b"PNG..."
        with pytest.raises(AuthError):
            await client.post_to_nexus(CHANNEL, SecretStr("wrong-secret"), {"text": "x"})
    [received] = sandbox.calls("message")
    assert received.document == message(settings)
    assert received.headers["x-b3-traceid"] == TRACE


async def test_simulator_faults_throttle_with_retry_after() -> None:
    settings = make(nexus_api_key=None)
    sandbox = NexusSandbox(ccid=CCID, faults=Faults(throttle_next=1, retry_after_s=3))
    sandbox.add_channel(CHANNEL, webhook_secret="wh", api_secret=API_SECRET.get_secret_value())
    async with sandbox_client(sandbox, settings) as http:
        client = NexusClient(http, settings)
        with pytest.raises(ThrottledError) as caught:
            await client.post_to_nexus(CHANNEL, API_SECRET, {"text": "x"})
        assert caught.value.retry_after_s == 3.0
        sandbox.faults = Faults(error_rate=1.0)
        with pytest.raises(RetryableError):
            await client.post_to_nexus(CHANNEL, API_SECRET, {"text": "x"})
        sandbox.faults = Faults()
        await client.post_to_nexus(CHANNEL, API_SECRET, {"text": "x"})
    assert len(sandbox.calls("message")) == 1


async def test_simulator_provisioning_registers_channels_and_takes_receipts_and_typing() -> None:
    from channel_bridge.platforms.nexus.provisioning import (
        ProvisionedChannel,
        async_service_body,
        post_service,
    )
    from channel_bridge.platforms.nexus.schemas import build_typing

    settings = make(nexus_typing_enabled=True)
    sandbox = NexusSandbox(ccid=CCID, api_key="nexus-api-key-0b1c2d3e")
    body = async_service_body(
        settings, [ProvisionedChannel(CHANNEL, SecretStr("wh-1"), API_SECRET)]
    )
    async with sandbox_client(sandbox, settings) as http:
        await post_service(http, settings, "Async", body)
        client = NexusClient(http, settings)
        fields = FieldMap.from_settings(settings)
        await client.send_receipt(
            CHANNEL, API_SECRET, build_receipt(fields, message_id="nx-1", status="read")
        )
        await client.send_typing(
            CHANNEL, API_SECRET, build_typing(fields, channel_id=CHANNEL, from_address="+1555")
        )
    assert sandbox.services["Async"] == body
    assert sandbox.channels[CHANNEL].api_secret == API_SECRET.get_secret_value()
    assert [call.document for call in sandbox.calls("receipt")] == [
        {"messageId": "nx-1", "status": "read"}
    ]
    assert sandbox.calls("typing")[0].document == {
        "channelId": CHANNEL,
        "from": "+1555",
        "typing": True,
    }
