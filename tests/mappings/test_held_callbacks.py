"""Lifecycle callbacks that cannot be applied as is: stored raw, answered 200, resolved by hand.

AXP fails the administrator's operation when the callback fails, so none of these bodies is
refused; each is held once (however often it is sent) until an operator resolves or
dismisses it through the admin API or the CLI.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from channel_bridge.db.models import InboxEvent, Integration
from tests.conftest import make_settings, running_app
from tests.mappings.conftest import (
    ACCOUNT_ID,
    ADMIN,
    CALLBACK_URL,
    CHANNEL_PROVIDER_ID,
    INTEGRATION_ID,
    add_channel,
    count,
    deliveries,
)
from tests.mappings.test_lifecycle_callback import CREATED_SHAPES, post

PENDING = "/admin/v1/integrations/pending"

# (method, body, the problem fields the operator is shown). Most were a 422 before; the
# empty body was a 400.
UNRESOLVABLE = [
    pytest.param("POST", b"", ["body", "body.action", "body.integrationId"], id="empty-body"),
    pytest.param("POST", b"   \n", ["body", "body.action", "body.integrationId"], id="whitespace"),
    pytest.param(
        "POST",
        [{"op": "replace", "path": "/name", "value": "x"}],
        ["body", "body.action", "body.integrationId"],
        id="top-level-array",
    ),
    pytest.param("POST", "CREATED", ["body", "body.action", "body.integrationId"], id="string"),
    pytest.param("POST", {"integrationId": INTEGRATION_ID}, ["body.action"], id="no-action"),
    pytest.param(
        "POST",
        {"event": "ARCHIVED", "integrationId": INTEGRATION_ID},
        ["body.event"],
        id="unknown-verb",
    ),
    pytest.param(
        "POST",
        {"eventType": 7, "integrationId": INTEGRATION_ID},
        ["body.eventType"],
        id="verb-not-text",
    ),
    pytest.param("POST", {"event": "CREATED"}, ["body.integrationId"], id="no-id"),
    pytest.param(
        "POST",
        {"event": "PAUSED"},
        ["body.event", "body.integrationId"],
        id="nothing-known",
    ),
    pytest.param(
        "POST",
        {"event": "CREATED", "action": "DELETE", "integrationId": INTEGRATION_ID},
        ["body.event"],
        id="contradicting-verbs",
    ),
    pytest.param(
        "POST",
        {"event": "CREATED", "integrationId": INTEGRATION_ID, "integration": {"id": "other-1"}},
        ["body.integration.id"],
        id="two-ids",
    ),
    pytest.param(
        "POST",
        {
            "event": "CREATED",
            "integrationId": INTEGRATION_ID,
            "accountId": "ABCDEF",
            "accountid": "GHIJKL",
        },
        ["body.accountId"],
        id="key-case-disagrees",
    ),
    pytest.param(
        "POST",
        {
            "integrationId": INTEGRATION_ID,
            "name": "A",
            "changes": [{"field": "name", "newValue": "B"}],
        },
        ["body.changes[0].newValue"],
        id="change-list-disagrees",
    ),
    pytest.param(
        "POST",
        {"integrationId": INTEGRATION_ID, "status": "INACTIVE"},
        ["body.status"],
        id="status-says-neither",
    ),
    pytest.param(
        "DELETE",
        {"event": "CREATED", "id": INTEGRATION_ID},
        ["body.event"],
        id="delete-says-created",
    ),
    pytest.param(
        "POST", {"event": "CREATED", "integrationId": "a b c"}, ["body.integrationId"], id="bad-id"
    ),
    pytest.param(
        "POST",
        {"event": "CREATED", "integration": {"id": "x" * 257}},
        ["body.integration.id"],
        id="id-too-long",
    ),
    pytest.param(
        "POST",
        {"event": "CREATED", "id": INTEGRATION_ID, "accountId": "12"},
        ["body.accountId"],
        id="bad-account",
    ),
    pytest.param(
        "POST",
        {"event": "CREATED", "id": INTEGRATION_ID, "name": ["n"]},
        ["body.name"],
        id="name-not-text",
    ),
    pytest.param(
        "POST",
        {"event": "CREATED", "id": INTEGRATION_ID, "name": "nul\u0000"},
        ["body"],
        id="not-storable-as-json",
    ),
]


def _raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def _held_count() -> float:
    return (
        REGISTRY.get_sample_value(
            "bridge_webhooks_total", {"source": "axp.integration", "outcome": "needs_review"}
        )
        or 0.0
    )


@pytest.mark.parametrize(("method", "body", "fields"), UNRESOLVABLE)
async def test_unresolvable_callback_is_held_once_and_listed(
    client, sessionmaker, method, body, fields
) -> None:
    raw = _raw(body)
    counted = _held_count()
    answers = [await post(client, raw, method=method) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
    assert answers[0].json()["needsReview"] is True and answers[0].json()["status"] == "accepted"
    assert answers[1].json() == answers[0].json() == answers[2].json()
    assert _held_count() == counted + 1  # the repeats are duplicates, not new holds

    assert await count(sessionmaker, InboxEvent) == 1
    assert await count(sessionmaker, Integration) == 0
    assert await deliveries(sessionmaker) == []
    async with sessionmaker() as session:
        event = await session.scalar(select(InboxEvent))
    assert event is not None
    assert (event.source, event.status, event.kind) == (
        "axp.integration",
        "needs_review",
        "needs_review",
    )
    assert event.raw_body == raw.decode()
    assert event.external_id.startswith("held:sha256:")

    listed = (await client.get(PENDING, headers=ADMIN)).json()
    assert [item["id"] for item in listed] == [event.id]
    assert [p["field"] for p in listed[0]["problems"]] == fields
    assert listed[0]["method"] == method and listed[0]["raw_body"] == raw.decode()
    assert event.note and fields[0] in event.note


async def test_foreign_account_is_held_not_applied(database_url, engine, sessionmaker) -> None:
    settings = make_settings(database_url, axp_account_id="ABCDEF")
    async with running_app(settings) as (_app, client):
        response = await post(client, CREATED_SHAPES[0])
        listed = (await client.get(PENDING, headers=ADMIN)).json()
    assert response.status_code == 200 and response.json()["needsReview"] is True
    assert response.json()["integrationId"] == INTEGRATION_ID
    assert listed[0]["problems"][0]["field"] == "body.accountId"
    assert "this bridge serves ABCDEF" in listed[0]["problems"][0]["message"]
    assert await count(sessionmaker, Integration) == 0


async def test_resolving_applies_the_change_through_the_integration_path(
    client, sessionmaker
) -> None:
    body = {
        "integrationId": INTEGRATION_ID,
        "name": "SMS support",
        "channelProviderId": CHANNEL_PROVIDER_ID,
        "accountId": ACCOUNT_ID,
    }
    await post(client, body)  # no action: held
    (held,) = (await client.get(PENDING, headers=ADMIN)).json()
    assert held["hints"] == {
        "integration_id": INTEGRATION_ID,
        "name": "SMS support",
        "account_id": ACCOUNT_ID,
        "channel_provider_id": CHANNEL_PROVIDER_ID,
    }

    resolved = await client.post(
        f"{PENDING}/{held['id']}/resolve", json={"action": "created"}, headers=ADMIN
    )
    assert resolved.status_code == 200, resolved.text
    answer = resolved.json()
    assert answer["held"]["status"] == "handled" and answer["held"]["handled_at"]
    assert answer["held"]["note"].startswith(f"resolved as created of {INTEGRATION_ID} via admin")
    assert answer["integration"]["name"] == "SMS support"
    assert answer["integration"]["source"] == "admin"
    # The same deliveries a callback with the action would have queued.
    assert [d.destination for d in await deliveries(sessionmaker)] == [
        "akixi.upsert",
        "axp.subscription.ensure",
    ]
    async with sessionmaker() as session:
        row = await session.get(Integration, INTEGRATION_ID)
    assert row is not None and row.raw == body
    assert (await client.get(PENDING, headers=ADMIN)).json() == []
    assert (await client.get(f"{PENDING}/{held['id']}", headers=ADMIN)).json()["status"] == (
        "handled"
    )
    assert await count(sessionmaker, InboxEvent) == 2  # the held callback and its resolution

    again = await client.post(
        f"{PENDING}/{held['id']}/resolve", json={"action": "created"}, headers=ADMIN
    )
    assert again.status_code == 409 and "already handled" in again.json()["detail"]
    assert len(await deliveries(sessionmaker)) == 2
    # The sender retrying the held body changes nothing either.
    assert (await post(client, body)).json()["needsReview"] is True
    assert await count(sessionmaker, InboxEvent) == 2


async def test_resolving_a_delete_disables_the_channels(client, sessionmaker) -> None:
    await post(client, CREATED_SHAPES[0])
    await add_channel(client)
    await post(client, {"integrationId": INTEGRATION_ID, "status": "SUSPENDED"})
    (held,) = (await client.get(PENDING, headers=ADMIN)).json()
    resolved = await client.post(
        f"{PENDING}/{held['id']}/resolve", json={"action": "deleted"}, headers=ADMIN
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["disabled_channels"] == ["+15559870000"]
    assert resolved.json()["integration"]["status"] == "deleted"
    channel = (await client.get("/admin/v1/channels/+15559870000", headers=ADMIN)).json()
    assert "deleted via admin API" in channel["disabled_reason"]


async def test_resolution_needs_an_integration_id_when_none_was_read(client, sessionmaker) -> None:
    await post(client, b"")
    (held,) = (await client.get(PENDING, headers=ADMIN)).json()
    url = f"{PENDING}/{held['id']}/resolve"
    missing = await client.post(url, json={"action": "created"}, headers=ADMIN)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "body.integration_id"
    bad = await client.post(url, json={"action": "archived"}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.action"
    done = await client.post(
        url,
        json={"action": "created", "integration_id": INTEGRATION_ID, "name": "Typed in"},
        headers=ADMIN,
    )
    assert done.status_code == 200 and done.json()["integration"]["name"] == "Typed in"
    async with sessionmaker() as session:
        row = await session.get(Integration, INTEGRATION_ID)
    assert row is not None and row.raw is None  # an empty body has nothing to keep


async def test_dismissing_closes_without_applying(client, sessionmaker) -> None:
    await post(client, {"event": "PING"})
    (held,) = (await client.get(PENDING, headers=ADMIN)).json()
    dismissed = await client.post(
        f"{PENDING}/{held['id']}/dismiss", json={"reason": "element save test"}, headers=ADMIN
    )
    assert dismissed.status_code == 200
    assert dismissed.json()["status"] == "ignored"
    assert dismissed.json()["note"].endswith(": element save test")
    assert (await client.get(PENDING, headers=ADMIN)).json() == []
    assert await count(sessionmaker, Integration) == 0 and await deliveries(sessionmaker) == []
    late = await client.post(
        f"{PENDING}/{held['id']}/resolve", json={"action": "created"}, headers=ADMIN
    )
    assert late.status_code == 409


async def test_unknown_held_ids_and_applied_events_are_404(client, sessionmaker) -> None:
    await post(client, CREATED_SHAPES[0])  # applied, not held
    async with sessionmaker() as session:
        applied = await session.scalar(select(InboxEvent))
    assert applied is not None
    for held_id in (applied.id, 999_999):
        assert (await client.get(f"{PENDING}/{held_id}", headers=ADMIN)).status_code == 404
        resolve = await client.post(
            f"{PENDING}/{held_id}/resolve", json={"action": "created"}, headers=ADMIN
        )
        assert resolve.status_code == 404
        dismiss = await client.post(f"{PENDING}/{held_id}/dismiss", headers=ADMIN)
        assert dismiss.status_code == 404
    assert (await client.get(PENDING)).status_code == 401  # admin token required


async def test_query_values_postgresql_cannot_store_are_held(client, sessionmaker) -> None:
    url = f"{CALLBACK_URL}?integrationId={INTEGRATION_ID}&name=a%00b"
    response = await post(client, {"event": "CREATED"}, token_url=url)
    assert response.status_code == 200 and response.json()["needsReview"] is True
    (held,) = (await client.get(PENDING, headers=ADMIN)).json()
    assert [p["field"] for p in held["problems"]] == ["query.name"]
    assert held["hints"] == {"action": "created", "integration_id": INTEGRATION_ID}
    assert await count(sessionmaker, Integration) == 0
