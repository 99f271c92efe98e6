"""POST /axp/callbacks/{token}/notifications: store once and answer 200, or reject cleanly."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from channel_bridge.db.models import Delivery, InboxEvent
from channel_bridge.relay.envelope import DeliveryRequest, Plan
from tests.axp.conftest import ACCOUNT_ID, callback_examples
from tests.conftest import TEST_CALLBACK_TOKEN, make_settings, running_app

URL = f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications"
PROBLEM = "application/problem+json"


def counted(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "bridge_webhooks_total", {"source": "axp.notification", "outcome": outcome}
        )
        or 0.0
    )


async def inbox_rows(sessionmaker) -> list[InboxEvent]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(InboxEvent).order_by(InboxEvent.id))).all())


@pytest.fixture
def axp_app_settings(database_url: str):
    return make_settings(database_url, axp_account_id=ACCOUNT_ID)


@pytest.fixture
async def client(axp_app_settings, engine):
    async with running_app(axp_app_settings) as (_app, client):
        yield client


def post(
    client: httpx.AsyncClient, body: Any, *, url: str = URL, content_type: str = "application/json"
):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(url, content=content, headers={"content-type": content_type})


@pytest.mark.parametrize(
    "name",
    [
        "Message-Event-Messaging-Customer-To-Agent-Image",
        "Typing-Event",
        "Engagement-Error-Event",
        "Participant-Disconnected-Event",
    ],
)
async def test_a_spec_event_is_stored_and_acknowledged(client, sessionmaker, name: str) -> None:
    data = callback_examples()[name]
    before = counted("accepted")
    response = await post(client, data)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    rows = await inbox_rows(sessionmaker)
    assert len(rows) == 1
    row = rows[0]
    assert (row.source, row.kind, row.payload) == ("axp.notification", data["eventType"], data)
    assert row.ack == {"status": "accepted"}
    assert json.loads(row.raw_body) == data
    if data["eventType"] == "MESSAGES":
        assert row.external_id == f"MESSAGES:{data['messageId']}:{data['status']}"
    else:
        assert row.external_id.startswith("sha256:")
    assert counted("accepted") == before + 1


async def test_a_redelivery_is_stored_once_and_gets_the_same_answer(client, sessionmaker) -> None:
    data = callback_examples()["Message-Event-Messaging-Agent-To-Customer-File"]
    before = counted("duplicate")
    first = await post(client, data)
    # AXP re-sends with the same body; a key-order change must still be the same event.
    second = await post(client, dict(reversed(list(data.items()))))
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert len(await inbox_rows(sessionmaker)) == 1
    assert counted("duplicate") == before + 1


@pytest.mark.parametrize("name", sorted(callback_examples()))
async def test_an_event_without_correlation_id_is_stored_once(
    client, sessionmaker, name: str
) -> None:
    """The spec lists correlationId as required but calls it "an optional field"."""
    data = {k: v for k, v in callback_examples()[name].items() if k != "correlationId"}
    answers = [await post(client, data) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert answers[0].json() == answers[1].json() == {"status": "accepted"}
    [row] = await inbox_rows(sessionmaker)
    assert row.payload == data and row.kind == data["eventType"]


async def test_a_status_change_is_a_new_event(client, sessionmaker) -> None:
    data = callback_examples()["Message-Event-Messaging-Agent-To-Customer-File"]
    await post(client, data)
    await post(client, dict(data, status="READ"))
    assert [r.external_id.rsplit(":", 1)[1] for r in await inbox_rows(sessionmaker)] == [
        "DELIVERED",
        "READ",
    ]


async def test_unknown_event_type_is_stored_and_acknowledged(client, sessionmaker) -> None:
    data = {
        "eventType": "CONVERSATION_SUMMARY",
        "correlationId": "c-1",
        "eventDate": "2026-01-01T00:00:00Z",
        "accountId": ACCOUNT_ID,
        "summary": "new vendor event",
    }
    response = await post(client, data)
    assert response.status_code == 200
    [row] = await inbox_rows(sessionmaker)
    assert row.kind == "CONVERSATION_SUMMARY" and row.payload == data


async def test_extra_fields_are_accepted_and_kept(client, sessionmaker) -> None:
    data = dict(callback_examples()["Engagement-Created-Event"], brandNewField={"a": 1})
    assert (await post(client, data)).status_code == 200
    [row] = await inbox_rows(sessionmaker)
    assert row.payload["brandNewField"] == {"a": 1}


async def test_foreign_account_is_answered_but_stored_nowhere(client, sessionmaker) -> None:
    data = dict(callback_examples()["Message-Event-Chat-Plain-Text-Simple"], accountId="ZZZZZZ")
    before = counted("foreign_account")
    response = await post(client, data)
    assert response.status_code == 200 and response.json() == {"status": "accepted"}
    assert await inbox_rows(sessionmaker) == []
    assert counted("foreign_account") == before + 1


async def test_the_planner_hook_turns_an_event_into_deliveries(
    axp_app_settings, engine, sessionmaker
) -> None:
    seen = []

    def planner(event):
        seen.append(event)
        return Plan(
            [
                DeliveryRequest(
                    destination="nexus.send_message",
                    payload={"text": "x"},
                    partition_key=event.providerDialogId,
                )
            ]
        )

    async with running_app(axp_app_settings) as (app, client):
        app.state_now.planners.axp_event = planner
        data = callback_examples()["Message-Event-Messaging-Agent-To-Customer-Reply"]
        assert (await post(client, data)).status_code == 200
        assert (await post(client, data)).status_code == 200
    assert len(seen) == 2 and seen[0].messageId == data["messageId"]
    async with sessionmaker() as session:
        deliveries = (await session.scalars(select(Delivery))).all()
    assert [(d.destination, d.partition_key) for d in deliveries] == [
        ("nexus.send_message", "616imlgwg266hjs670nl")
    ]


async def assert_rejected(response: httpx.Response, status: int, sessionmaker) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0
    return body


async def test_wrong_token_is_a_plain_404(client, sessionmaker) -> None:
    data = callback_examples()["Typing-Event"]
    before = counted("bad_token")
    wrong = await post(
        client, data, url="/axp/callbacks/" + "x" * len(TEST_CALLBACK_TOKEN) + "/notifications"
    )
    body = await assert_rejected(wrong, 404, sessionmaker)
    nowhere = await post(client, data, url="/no/such/path")
    assert body == nowhere.json()
    assert "token" not in json.dumps(body).lower()
    assert counted("bad_token") == before + 1


async def test_non_json_content_type_is_415(client, sessionmaker) -> None:
    response = await post(
        client, b"eventType=MESSAGES", content_type="application/x-www-form-urlencoded"
    )
    body = await assert_rejected(response, 415, sessionmaker)
    assert "application/json" in body["detail"]


async def test_malformed_json_is_400(client, sessionmaker) -> None:
    await assert_rejected(await post(client, b'{"eventType": "MESSAGES",'), 400, sessionmaker)


async def test_schema_violations_are_422_with_field_paths(client, sessionmaker) -> None:
    data = dict(callback_examples()["Message-Event-Chat-Plain-Text-Simple"])
    del data["channelId"]
    data["body"] = {"elementText": {"textFormat": "PLAINTEXT"}}
    body = await assert_rejected(await post(client, data), 422, sessionmaker)
    assert sorted(e["field"] for e in body["errors"]) == [
        "body.elementText.text",
        "body.elementType",
        "channelId",
    ]
    assert (await post(client, [1, 2])).status_code == 422
    assert (await post(client, {"correlationId": "no event type"})).status_code == 422


async def test_a_body_over_the_limit_is_413(database_url: str, engine, sessionmaker) -> None:
    settings = make_settings(database_url, axp_account_id=ACCOUNT_ID, max_body_bytes=2048)
    data = dict(callback_examples()["Typing-Event"], padding="p" * 4096)
    async with running_app(settings) as (_app, client):
        await assert_rejected(await post(client, data), 413, sessionmaker)

        async def chunks():
            raw = json.dumps(data).encode()
            for start in range(0, len(raw), 512):
                yield raw[start : start + 512]

        streamed = await client.post(
            URL, content=chunks(), headers={"content-type": "application/json"}
        )
        await assert_rejected(streamed, 413, sessionmaker)
