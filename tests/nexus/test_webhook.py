"""POST /nexus/channels/{channelId}/webhook against the real app and database (both backends)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from channel_bridge.db.models import Delivery, InboxEvent
from channel_bridge.platforms.nexus.schemas import NexusWebhookMessage
from channel_bridge.platforms.nexus.signing import sign
from channel_bridge.relay.envelope import DeliveryRequest, Plan
from tests.conftest import make_settings, running_app
from tests.nexus.channels import add_channel

CHANNEL = "+16504661149"
WEBHOOK_SECRET = "webhook-secret-one-2d8f"
URL = f"/nexus/channels/{CHANNEL}/webhook"
MESSAGE = {
    "id": "dc-msg-0001",
    "channelId": CHANNEL,
    "to": "+15551230001",
    "from": CHANNEL,
    "text": "Your order has shipped",
    "timestamp": "2026-11-24T01:00:00Z",
    "priority": "high",
}


def encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def signed_headers(
    body: bytes, secret: str = WEBHOOK_SECRET, encoding: str = "hex", **extra: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature": sign(body, secret, encoding),
        **extra,
    }


async def count(sessionmaker, model) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model))


def trivial_planner(calls: list[tuple]):
    def plan(channel, message: NexusWebhookMessage, ack_id: str, trace_id: str):
        calls.append((channel.nexus_channel_id, message, ack_id, trace_id))
        return Plan(
            [
                DeliveryRequest(
                    "axp.send_message",
                    {"ackId": ack_id, "text": message.text},
                    partition_key=f"{channel.nexus_channel_id}:{message.to}",
                )
            ]
        )

    return plan


async def test_signed_message_is_stored_and_acknowledged(database_url, sessionmaker) -> None:
    settings = make_settings(database_url)
    await add_channel(sessionmaker, settings, CHANNEL)
    body = encode(MESSAGE)
    calls: list[tuple] = []
    async with running_app(settings) as (app, client):
        app.state_now.planners.nexus_message = trivial_planner(calls)
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        response = await client.post(
            URL, content=body, headers=signed_headers(body, **{"X-B3-TraceId": trace})
        )
    assert response.status_code == 200, response.text
    ack = response.json()["messageId"]
    assert re.fullmatch(r"nx-[0-9a-f]{32}", ack)
    assert response.json() == {"messageId": ack}
    assert response.headers["x-b3-traceid"] == trace
    async with sessionmaker() as session:
        event = await session.scalar(select(InboxEvent))
        delivery = await session.scalar(select(Delivery))
    assert event.source == "nexus.webhook"
    assert event.external_id == f"{CHANNEL}:id:dc-msg-0001"
    assert event.raw_body == body.decode()
    assert event.ack == {"messageId": ack}
    assert event.payload["channelId"] == CHANNEL
    assert event.payload["traceId"] == trace
    assert event.payload["message"] == MESSAGE
    assert event.payload["parsed"]["text"] == "Your order has shipped"
    assert delivery.payload == {"ackId": ack, "text": "Your order has shipped"}
    [(channel_id, message, planned_ack, planned_trace)] = calls
    assert (channel_id, planned_ack, planned_trace) == (CHANNEL, ack, trace)
    assert message.to == "+15551230001" and message.from_ == CHANNEL
    assert message.extra == {"priority": "high"}


@pytest.mark.parametrize(
    ("setting", "sent_encoding", "expected"),
    [
        ("hex", "hex", 200),
        ("hex", "base64", 401),
        ("base64", "base64", 200),
        ("base64", "hex", 401),
        ("auto", "hex", 200),
        ("auto", "base64", 200),
    ],
)
async def test_signature_encoding_setting(
    database_url, sessionmaker, setting, sent_encoding, expected
) -> None:
    settings = make_settings(database_url, nexus_signature_encoding=setting)
    await add_channel(sessionmaker, settings, CHANNEL)
    body = encode(MESSAGE)
    async with running_app(settings) as (_app, client):
        response = await client.post(
            URL, content=body, headers=signed_headers(body, encoding=sent_encoding)
        )
    assert response.status_code == expected, response.text
    assert await count(sessionmaker, InboxEvent) == (1 if expected == 200 else 0)


@pytest.mark.parametrize("setting", ["hex", "auto"])
async def test_upper_case_hex_signature_is_accepted_and_stored_once(
    database_url, sessionmaker, setting
) -> None:
    """Hex case is specified nowhere; a sender that upper-cases its digest is still genuine."""
    settings = make_settings(database_url, nexus_signature_encoding=setting)
    await add_channel(sessionmaker, settings, CHANNEL)
    body = encode(MESSAGE)
    header = sign(body, WEBHOOK_SECRET, "hex")
    headers = {"Content-Type": "application/json", "X-Hub-Signature": "sha1=" + header[5:].upper()}
    async with running_app(settings) as (app, client):
        app.state_now.planners.nexus_message = trivial_planner([])
        first = await client.post(URL, content=body, headers=headers)
        again = await client.post(URL, content=body, headers={**headers, "X-Hub-Signature": header})
    assert (first.status_code, again.status_code) == (200, 200), first.text
    assert again.json() == first.json()
    assert await count(sessionmaker, InboxEvent) == 1
    assert await count(sessionmaker, Delivery) == 1


async def test_rotation_accepts_both_secrets_until_old_is_removed(
    database_url, sessionmaker
) -> None:
    settings = make_settings(database_url)
    await add_channel(
        sessionmaker, settings, CHANNEL, webhook_secrets=["new-secret-aa11", "old-secret-bb22"]
    )
    async with running_app(settings) as (_app, client):
        for index, secret in enumerate(["new-secret-aa11", "old-secret-bb22"]):
            body = encode({**MESSAGE, "id": f"rot-{index}"})
            response = await client.post(URL, content=body, headers=signed_headers(body, secret))
            assert response.status_code == 200, response.text
        body = encode({**MESSAGE, "id": "rot-x"})
        response = await client.post(
            URL, content=body, headers=signed_headers(body, "retired-secret")
        )
        assert response.status_code == 401
    assert await count(sessionmaker, InboxEvent) == 2


def _case(name: str, **kwargs: Any) -> Any:
    return pytest.param(kwargs, id=name)


REJECTIONS = [
    _case("unknown-channel", status=404, path="/nexus/channels/+19999999999/webhook"),
    _case("disabled-channel", status=404, path="/nexus/channels/disabled-1/webhook"),
    _case("odd-channel-id", status=404, path="/nexus/channels/..%5Cetc%20passwd/webhook"),
    _case("missing-signature", status=401, headers={"X-Hub-Signature": None}),
    _case("wrong-signature", status=401, secret="not-the-secret"),
    _case("api-secret-is-not-webhook-secret", status=401, secret="api-secret-one-7c1a"),
    _case("signed-other-bytes", status=401, sign_body=encode({**MESSAGE, "text": "tampered"})),
    _case("too-large", status=413, body=encode({**MESSAGE, "text": "x" * 5000})),
    _case("malformed-json", status=400, body=b'{"id": "m1", "text": '),
    _case("nan-is-not-json", status=400, body=b'{"id": "m1", "text": "x", "score": NaN}'),
    _case("deeply-nested-json", status=400, body=b"[" * 1500 + b"]" * 1500),
    _case(
        "nested-too-deep",
        status=422,
        body=b'{"id":"m5","text":"x","a":' + b"[" * 40 + b"]" * 40 + b"}",
    ),
    _case("nul-character", status=422, body=b'{"id": "m1", "text": "a\\u0000b"}'),
    _case("not-json-content-type", status=415, headers={"Content-Type": "text/plain"}),
    _case("no-text-no-media", status=422, body=encode({"id": "m2", "to": "+15551230001"})),
    _case("text-not-a-string", status=422, body=encode({"id": "m3", "text": {"a": 1}})),
    _case(
        "media-without-url", status=422, body=encode({"id": "m4", "media": [{"filename": "a.png"}]})
    ),
    _case(
        "other-channel-in-body", status=422, body=encode({**MESSAGE, "channelId": "+15550000000"})
    ),
    _case("messages-not-a-list", status=422, body=encode({"messages": "hello"})),
    _case("message-not-an-object", status=422, body=encode(["hello"])),
    _case("empty-batch", status=422, body=encode({"messages": []})),
]


@pytest.mark.parametrize("case", REJECTIONS)
async def test_rejections_are_problems_and_store_nothing(database_url, sessionmaker, case) -> None:
    settings = make_settings(database_url, max_body_bytes=4096)
    await add_channel(sessionmaker, settings, CHANNEL)
    await add_channel(sessionmaker, settings, "disabled-1", enabled=False)
    body = case.get("body", encode(MESSAGE))
    headers: dict[str, Any] = signed_headers(
        case.get("sign_body", body), case.get("secret", WEBHOOK_SECRET)
    )
    headers.update(case.get("headers", {}))
    headers = {k: v for k, v in headers.items() if v is not None}
    async with running_app(settings) as (app, client):
        app.state_now.planners.nexus_message = trivial_planner([])
        response = await client.post(case.get("path", URL), content=body, headers=headers)
    assert response.status_code == case["status"], response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == case["status"] and problem["detail"]
    assert await count(sessionmaker, InboxEvent) == 0
    assert await count(sessionmaker, Delivery) == 0


async def test_redelivery_gets_same_message_id_and_no_second_delivery(
    database_url, sessionmaker
) -> None:
    settings = make_settings(database_url)
    await add_channel(sessionmaker, settings, CHANNEL)
    body = encode(MESSAGE)
    calls: list[tuple] = []
    async with running_app(settings) as (app, client):
        app.state_now.planners.nexus_message = trivial_planner(calls)
        first = await client.post(URL, content=body, headers=signed_headers(body))
        again = await client.post(URL, content=body, headers=signed_headers(body))
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert await count(sessionmaker, InboxEvent) == 1
    assert await count(sessionmaker, Delivery) == 1
    # The (pure) planner may run for the redelivery too; what it plans then is never stored.
    assert len(calls) in (1, 2)


async def test_twenty_concurrent_redeliveries_store_one_message(database_url, sessionmaker) -> None:
    settings = make_settings(database_url)
    await add_channel(sessionmaker, settings, CHANNEL)
    body = encode(MESSAGE)
    async with running_app(settings) as (app, client):
        app.state_now.planners.nexus_message = trivial_planner([])
        responses = await asyncio.gather(
            *[client.post(URL, content=body, headers=signed_headers(body)) for _ in range(20)]
        )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["messageId"] for r in responses}) == 1
    assert await count(sessionmaker, InboxEvent) == 1
    assert await count(sessionmaker, Delivery) == 1
    async with sessionmaker() as session:
        delivery = await session.scalar(select(Delivery))
    assert delivery.payload["ackId"] == responses[0].json()["messageId"]


async def test_message_without_id_is_deduplicated_by_body_hash(database_url, sessionmaker) -> None:
    settings = make_settings(database_url)
    await add_channel(sessionmaker, settings, CHANNEL)
    body = encode({"text": "no id here", "to": "+15551230001"})
    async with running_app(settings) as (_app, client):
        first = await client.post(URL, content=body, headers=signed_headers(body))
        again = await client.post(URL, content=body, headers=signed_headers(body))
        other_body = encode({"text": "another one", "to": "+15551230001"})
        other = await client.post(URL, content=other_body, headers=signed_headers(other_body))
    assert first.json() == again.json() != other.json()
    async with sessionmaker() as session:
        keys = set((await session.scalars(select(InboxEvent.external_id))).all())
    assert keys == {
        f"{CHANNEL}:sha256:{hashlib.sha256(body).hexdigest()}",
        f"{CHANNEL}:sha256:{hashlib.sha256(other_body).hexdigest()}",
    }


async def test_batch_form_and_media_only_message(database_url, sessionmaker) -> None:
    settings = make_settings(database_url)
    await add_channel(sessionmaker, settings, CHANNEL)
    media = {
        "id": "dc-msg-media",
        "to": "+15551230001",
        "media": [
            {"url": "genesys://nexus/bb4a9f86", "contentType": "image/jpeg", "filename": "MyImage"}
        ],
    }
    body = encode({"messages": [media]})
    calls: list[tuple] = []
    async with running_app(settings) as (app, client):
        app.state_now.planners.nexus_message = trivial_planner(calls)
        response = await client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 200, response.text
    [(_, message, _, _)] = calls
    assert [item.model_dump() for item in message.media] == [
        {"url": "genesys://nexus/bb4a9f86", "content_type": "image/jpeg", "filename": "MyImage"}
    ]


@pytest.mark.parametrize("bad_trace", ["not-hex-at-all", "4bf92f35\r\nX-Evil: 1", "abc", "g" * 32])
async def test_invalid_trace_id_is_replaced_not_propagated(
    database_url, sessionmaker, bad_trace
) -> None:
    settings = make_settings(database_url)
    await add_channel(sessionmaker, settings, CHANNEL)
    body = encode(MESSAGE)
    headers = signed_headers(body)
    async with running_app(settings) as (_app, client):
        # httpx refuses CR/LF in a header value, so send the raw bytes through the ASGI scope.
        raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw_headers.append((b"x-b3-traceid", bad_trace.encode()))
        response = await client.post(URL, content=body, headers=raw_headers)
    assert response.status_code == 200
    trace = response.headers["x-b3-traceid"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace) and trace != bad_trace
    async with sessionmaker() as session:
        event = await session.scalar(select(InboxEvent))
    assert event.payload["traceId"] == trace


async def test_field_names_come_from_settings(database_url, sessionmaker) -> None:
    settings = make_settings(
        database_url,
        nexus_field_text="content.body,text",
        nexus_field_message_id="messageId",
        nexus_field_to="recipient.address",
    )
    await add_channel(sessionmaker, settings, CHANNEL)
    body = encode(
        {
            "messageId": "custom-1",
            "recipient": {"address": "+15551230002"},
            "content": {"body": "mapped without code changes"},
        }
    )
    calls: list[tuple] = []
    async with running_app(settings) as (app, client):
        app.state_now.planners.nexus_message = trivial_planner(calls)
        response = await client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 200, response.text
    [(_, message, _, _)] = calls
    assert (message.message_id, message.to, message.text) == (
        "custom-1",
        "+15551230002",
        "mapped without code changes",
    )
    async with sessionmaker() as session:
        assert await session.scalar(select(InboxEvent.external_id)) == f"{CHANNEL}:id:custom-1"


async def test_simulator_emits_webhooks_the_bridge_accepts(database_url, sessionmaker) -> None:
    from channel_bridge.sandbox.nexus import NexusSandbox

    settings = make_settings(database_url, nexus_signature_encoding="base64")
    await add_channel(sessionmaker, settings, CHANNEL)
    sandbox = NexusSandbox(ccid="ccid-1", signature_encoding="base64")
    sandbox.add_channel(CHANNEL, webhook_secret=WEBHOOK_SECRET, api_secret="api-secret-one-7c1a")
    async with running_app(settings) as (_app, client):
        response = await sandbox.emit_webhook(client, CHANNEL, MESSAGE, trace_id="a" * 16)
    assert response.status_code == 200, response.text
    assert response.headers["x-b3-traceid"] == "a" * 16
    assert await count(sessionmaker, InboxEvent) == 1


@pytest.mark.parametrize(
    ("overrides", "logged"),
    [
        ({}, False),
        ({"log_levels": {"channel_bridge.platforms.nexus.router": "DEBUG"}}, True),
        ({"nexus_signature_encoding": "auto"}, True),
    ],
)
async def test_the_verified_signature_is_logged_at_debug_or_in_auto(
    database_url, sessionmaker, capfd, overrides, logged
) -> None:
    settings = make_settings(database_url, **overrides)
    await add_channel(sessionmaker, settings, CHANNEL)
    body = encode(MESSAGE)
    router_logger = logging.getLogger("channel_bridge.platforms.nexus.router")
    try:
        async with running_app(settings) as (app, client):
            app.state_now.planners.nexus_message = trivial_planner([])
            response = await client.post(URL, content=body, headers=signed_headers(body))
    finally:
        router_logger.setLevel(logging.NOTSET)  # BRIDGE_LOG_LEVELS outlives its app
    assert response.status_code == 200, response.text
    assert ("nexus signature verified" in capfd.readouterr().err) is logged
