"""POST /genesys-cloud/integrations/{id}/webhook against the real app and database (both)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from channel_bridge.db.models import Delivery, InboxEvent
from channel_bridge.platforms.genesys_cloud.signing import sign
from channel_bridge.relay.envelope import DeliveryRequest, Plan
from tests.conftest import make_settings, running_app
from tests.genesys_cloud.conftest import INTEGRATION_ID, WEBHOOK_SECRET, fixture
from tests.nexus.channels import add_channel

URL = f"/genesys-cloud/integrations/{INTEGRATION_ID}/webhook"
TEXT = fixture("outbound_text.json")
TYPING = fixture("outbound_typing_event.json")


def encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def signed(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}


async def count(sessionmaker, model) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def add_gc_channel(sessionmaker, settings, **kwargs: Any):
    kwargs.setdefault("webhook_secrets", (WEBHOOK_SECRET,))
    return await add_channel(
        sessionmaker, settings, INTEGRATION_ID, backend="genesys-cloud", api_secret=None, **kwargs
    )


def recording_planner(calls: list[tuple]):
    def plan(channel, message, ack_id: str) -> Plan:
        calls.append((channel.nexus_channel_id, message, ack_id))
        return Plan([DeliveryRequest("axp.send_message", {"ackId": ack_id, "text": message.text})])

    return plan


async def test_a_signed_agent_message_is_stored_then_acknowledged(database_url, sessionmaker):
    settings = make_settings(database_url)
    await add_gc_channel(sessionmaker, settings)
    body = encode(TEXT)
    calls: list[tuple] = []
    async with running_app(settings) as (app, client):
        app.state_now.planners.genesys_cloud_message = recording_planner(calls)
        response = await client.post(URL, content=body, headers=signed(body))
        again = await client.post(URL, content=body, headers=signed(body))
    assert response.status_code == 200, response.text
    ack = response.json()["messageId"]
    assert re.fullmatch(r"gc-[0-9a-f]{32}", ack)
    # Genesys retries on a timeout: the retry gets the same answer and queues nothing more.
    assert again.status_code == 200 and again.json() == {"messageId": ack}
    async with sessionmaker() as session:
        event = await session.scalar(select(InboxEvent))
        deliveries = (await session.scalars(select(Delivery))).all()
    assert event.source == "genesys_cloud.webhook"
    assert event.kind == "message"
    assert event.external_id == f"{INTEGRATION_ID}:id:{TEXT['id']}"
    assert event.raw_body == body.decode()
    assert event.payload["message"] == TEXT
    assert [d.payload for d in deliveries] == [{"ackId": ack, "text": "Outbound message text!"}]
    [(channel_id, message, planned_ack)] = calls[:1]
    assert (channel_id, planned_ack) == (INTEGRATION_ID, ack)
    assert message.customer_id == "messaging-user@externalservice.com"
    assert message.type == "Text"


async def test_a_typing_event_and_a_receipt_are_stored_by_kind(database_url, sessionmaker):
    settings = make_settings(database_url)
    await add_gc_channel(sessionmaker, settings)
    receipt = {
        **TEXT,
        "type": "Receipt",
        "text": None,
        "status": "Delivered",
        "isFinalReceipt": True,
    }
    async with running_app(settings) as (_app, client):
        for document in (TYPING, receipt):
            body = encode(document)
            response = await client.post(URL, content=body, headers=signed(body))
            assert response.status_code == 200, response.text
    async with sessionmaker() as session:
        kinds = sorted((await session.scalars(select(InboxEvent.kind))).all())
    assert kinds == ["receipt", "typing"]


def _case(name: str, **values: Any) -> Any:
    return pytest.param(values, id=name)


REJECTIONS = [
    _case("wrong-signature", status=401, secret="another-secret-0000000"),
    _case("signature-of-other-body", status=401, sign_body=b"{}"),
    _case("no-signature", status=401, headers={"X-Hub-Signature-256": None}),
    _case("hex-signature", status=401, headers={"X-Hub-Signature-256": "sha256=" + "ab" * 32}),
    _case("unknown-integration", status=404, path="/genesys-cloud/integrations/other-1/webhook"),
    _case("nexus-channel", status=404, path="/genesys-cloud/integrations/nexus-1/webhook"),
    _case("disabled", status=404, path="/genesys-cloud/integrations/gc-disabled/webhook"),
    _case("not-json", status=400, body=b"{nope"),
    _case("xml", status=415, headers={"Content-Type": "text/xml"}),
    _case("no-id", status=422, body=encode({k: v for k, v in TEXT.items() if k != "id"})),
    _case("no-channel", status=422, body=encode({k: v for k, v in TEXT.items() if k != "channel"})),
    _case(
        "other-integration-in-body",
        status=422,
        body=encode({**TEXT, "channel": {**TEXT["channel"], "id": "another-integration"}}),
    ),
]


@pytest.mark.parametrize("case", REJECTIONS)
async def test_rejections_are_problems_and_store_nothing(database_url, sessionmaker, case):
    settings = make_settings(database_url)
    await add_gc_channel(sessionmaker, settings)
    await add_channel(sessionmaker, settings, "nexus-1", webhook_secrets=(WEBHOOK_SECRET,))
    await add_channel(
        sessionmaker,
        settings,
        "gc-disabled",
        backend="genesys-cloud",
        enabled=False,
        webhook_secrets=(WEBHOOK_SECRET,),
    )
    body = case.get("body", encode(TEXT))
    secret = case.get("secret", WEBHOOK_SECRET)
    headers: dict[str, Any] = signed(case.get("sign_body", body), secret)
    headers.update(case.get("headers", {}))
    headers = {k: v for k, v in headers.items() if v is not None}
    async with running_app(settings) as (app, client):
        app.state_now.planners.genesys_cloud_message = recording_planner([])
        response = await client.post(case.get("path", URL), content=body, headers=headers)
    assert response.status_code == case["status"], response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == case["status"] and problem["detail"]
    assert await count(sessionmaker, InboxEvent) == 0
    assert await count(sessionmaker, Delivery) == 0


async def test_a_wrong_signature_says_so_and_names_the_header(database_url, sessionmaker):
    settings = make_settings(database_url)
    await add_gc_channel(sessionmaker, settings)
    body = encode(TEXT)
    async with running_app(settings) as (_app, client):
        response = await client.post(
            URL, content=body, headers=signed(body, "not-the-secret-000000")
        )
    assert response.status_code == 401
    assert "X-Hub-Signature-256 does not match the body" in response.json()["detail"]
    assert WEBHOOK_SECRET not in response.text


async def test_the_nexus_webhook_refuses_a_genesys_cloud_channel(database_url, sessionmaker):
    settings = make_settings(database_url)
    await add_gc_channel(sessionmaker, settings)
    async with running_app(settings) as (_app, client):
        response = await client.post(
            f"/nexus/channels/{INTEGRATION_ID}/webhook", content=b"{}", headers=signed(b"{}")
        )
    assert response.status_code == 404
    assert await count(sessionmaker, InboxEvent) == 0


async def test_a_rotation_accepts_either_secret(database_url, sessionmaker):
    settings = make_settings(database_url)
    newer = "gc-signature-secret-token-newer-01"
    await add_gc_channel(sessionmaker, settings, webhook_secrets=(newer, WEBHOOK_SECRET))
    async with running_app(settings) as (_app, client):
        for n, secret in enumerate((newer, WEBHOOK_SECRET)):
            body = encode({**TEXT, "id": f"m-{n}"})
            response = await client.post(URL, content=body, headers=signed(body, secret))
            assert response.status_code == 200, response.text
    assert await count(sessionmaker, InboxEvent) == 2
