"""Hostile requests at the two webhook surfaces: refused with the right status, nothing stored.

Each case runs on both backends with the real app in-process; after every refusal the inbox
and the outbox are still empty.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from channel_bridge.db.models import Delivery, InboxEvent
from channel_bridge.platforms.nexus.signing import SIGNATURE_HEADER, sign
from channel_bridge.sandbox.mode import DEMO_NEXUS_CHANNEL, DEMO_WEBHOOK_SECRET, seed_demo_channel
from tests.axp.conftest import callback_examples
from tests.conftest import TEST_CALLBACK_TOKEN, make_settings, running_app

PROBLEM = "application/problem+json"
MAX_BODY = 64 * 1024
WEBHOOK = f"/nexus/channels/{DEMO_NEXUS_CHANNEL}/webhook"
CALLBACK = f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications"
MESSAGE = {"id": "hostile-1", "to": "+15557654321", "from": DEMO_NEXUS_CHANNEL, "text": "hi"}


@pytest.fixture
async def client(database_url: str, engine, sessionmaker) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url, max_body_bytes=MAX_BODY)
    async with running_app(settings) as (app, client):
        await seed_demo_channel(app.state_now.sessionmaker, app.state_now.secret_box)
        client.sessionmaker = sessionmaker  # type: ignore[attr-defined]
        yield client


def signed(body: bytes, content_type: str = "application/json") -> dict[str, str]:
    return {"Content-Type": content_type, SIGNATURE_HEADER: sign(body, DEMO_WEBHOOK_SECRET, "hex")}


async def assert_refused(client: httpx.AsyncClient, response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["status"] == status and problem["detail"]
    async with client.sessionmaker() as session:  # type: ignore[attr-defined]
        assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0
        assert await session.scalar(select(func.count()).select_from(Delivery)) == 0
    return problem


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def nested_message(depth: int) -> bytes:
    return (
        json.dumps({**MESSAGE, "extra": None}).replace("null", "[" * depth + "]" * depth).encode()
    )


# --- oversized bodies -------------------------------------------------------------------


async def test_oversized_webhook_is_413(client) -> None:
    body = json.dumps({**MESSAGE, "text": "x" * (MAX_BODY + 1)}).encode()
    await assert_refused(
        client, await client.post(WEBHOOK, content=body, headers=signed(body)), 413
    )


async def test_oversized_streamed_webhook_without_length_is_413(client) -> None:
    body = json.dumps({**MESSAGE, "text": "x" * (MAX_BODY + 1)}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = await client.post(WEBHOOK, content=chunks(), headers=signed(body))
    await assert_refused(client, response, 413)


async def test_oversized_callback_is_413(client) -> None:
    body = json.dumps({"eventType": "MESSAGES", "pad": "x" * (MAX_BODY + 1)}).encode()
    response = await client.post(
        CALLBACK, content=body, headers={"Content-Type": "application/json"}
    )
    await assert_refused(client, response, 413)


# --- deep nesting -----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [40, 5_000, 20_000])
async def test_deeply_nested_webhook_is_refused(client, depth: int) -> None:
    body = nested_message(depth)
    response = await client.post(WEBHOOK, content=body, headers=signed(body))
    # Parsable but deeper than the bridge stores: 422; past the parser's recursion limit: 400.
    await assert_refused(client, response, 422 if depth < 1000 else 400)


@pytest.mark.parametrize("depth", [40, 5_000, 20_000])
async def test_deeply_nested_callback_is_refused(client, depth: int) -> None:
    body = (
        nested(depth)
        if depth > 1000
        else json.dumps({"eventType": "MESSAGES"}).encode()[:-1] + (b',"x":' + nested(depth) + b"}")
    )
    response = await client.post(
        CALLBACK, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422), response.text[:300]
    await assert_refused(client, response, response.status_code)


async def test_deeply_nested_lifecycle_callback_is_400(client) -> None:
    response = await client.post(
        f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/integrations",
        content=nested(5_000),
        headers={"Content-Type": "application/json"},
    )
    await assert_refused(client, response, 400)


# --- encodings and content types ----------------------------------------------------------


async def test_invalid_utf8_webhook_is_400(client) -> None:
    body = b'{"id":"hostile-1","to":"+15557654321","text":"\xff\xfe\xc3\x28"}'
    await assert_refused(
        client, await client.post(WEBHOOK, content=body, headers=signed(body)), 400
    )


async def test_invalid_utf8_callback_is_400(client) -> None:
    body = b'{"eventType":"MESSAGES","x":"\xff\xfe"}'
    response = await client.post(
        CALLBACK, content=body, headers={"Content-Type": "application/json"}
    )
    await assert_refused(client, response, 400)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x"]
)
async def test_wrong_content_type_webhook_is_415(client, content_type: str) -> None:
    body = json.dumps(MESSAGE).encode()
    response = await client.post(WEBHOOK, content=body, headers=signed(body, content_type))
    await assert_refused(client, response, 415)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_wrong_content_type_callback_is_415(client, content_type: str) -> None:
    response = await client.post(
        CALLBACK, content=b'{"eventType":"MESSAGES"}', headers={"Content-Type": content_type}
    )
    await assert_refused(client, response, 415)


async def test_nul_character_webhook_is_422(client) -> None:
    body = json.dumps({**MESSAGE, "text": "a\u0000b"}).encode()
    await assert_refused(
        client, await client.post(WEBHOOK, content=body, headers=signed(body)), 422
    )


async def test_lone_surrogate_webhook_is_422(client) -> None:
    # Valid JSON (an escaped lone surrogate) that no UTF-8 store can hold, jsonb included.
    body = json.dumps({**MESSAGE, "text": "a\ud800b"}).encode()
    assert b"\\ud800" in body
    problem = await assert_refused(
        client, await client.post(WEBHOOK, content=body, headers=signed(body)), 422
    )
    assert "surrogate" in problem["detail"]


# A schema-valid MESSAGES callback (AXP spec example), so only the planted string is wrong.
CALLBACK_MESSAGE = callback_examples()["Message-Event-Chat-Plain-Text-Simple"]


@pytest.mark.parametrize(
    ("text", "reason"), [("a\u0000b", "NUL"), ("a\udc00b", "surrogate")], ids=["nul", "surrogate"]
)
async def test_unstorable_string_in_callback_is_422(client, text: str, reason: str) -> None:
    body = json.dumps({**CALLBACK_MESSAGE, "correlationId": text}).encode()
    assert b"\\u" in body
    response = await client.post(
        CALLBACK, content=body, headers={"Content-Type": "application/json"}
    )
    problem = await assert_refused(client, response, 422)
    assert reason in problem["detail"]


# --- headers and paths --------------------------------------------------------------------


@pytest.mark.parametrize(
    "trace_id",
    [
        "../../etc/passwd",
        "<script>alert(1)</script>",
        "a" * 5000,
        "abc\tSet-Cookie: x=1",
        "0123456789abcdef0123456789abcdef' OR 1=1",
    ],
)
async def test_hostile_trace_id_is_replaced_not_echoed(client, trace_id: str) -> None:
    body = json.dumps(MESSAGE).encode()
    headers = {**signed(body), "X-B3-TraceId": trace_id}
    response = await client.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 200
    echoed = response.headers["X-B3-TraceId"]
    assert echoed != trace_id and len(echoed) == 32 and all(c in "0123456789abcdef" for c in echoed)
    assert "set-cookie" not in response.headers


async def test_hostile_request_id_is_not_echoed(client) -> None:
    response = await client.get(
        "/healthz", headers={"X-Request-ID": "x\tSet-Cookie: a=b" + "y" * 500}
    )
    assert "Set-Cookie" not in response.headers.get("x-request-id", "")
    assert len(response.headers.get("x-request-id", "")) <= 128


@pytest.mark.parametrize(
    "channel_path",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "..%5C..%5Cwindows",
        "%00",
        "a%0d%0aSet-Cookie:x",
        "x" * 300,
    ],
)
async def test_path_traversal_channel_id_is_404(client, channel_path: str) -> None:
    body = json.dumps(MESSAGE).encode()
    response = await client.post(
        f"/nexus/channels/{channel_path}/webhook", content=body, headers=signed(body)
    )
    await assert_refused(client, response, 404)


async def test_traversal_in_callback_token_is_404(client) -> None:
    response = await client.post(
        "/axp/callbacks/..%2F..%2Fadmin/notifications",
        content=b'{"eventType":"MESSAGES"}',
        headers={"Content-Type": "application/json"},
    )
    await assert_refused(client, response, 404)
