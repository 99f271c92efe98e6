"""The AXP integration lifecycle callback: tolerant parsing, one commit, nothing on reject.

Held callbacks (shapes that cannot be applied as they are) are in test_held_callbacks.py.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select

from channel_bridge.db.models import Delivery, InboxEvent, Integration
from channel_bridge.platforms.axp.integration_callback import parse_action, parse_status
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

CREATED_SHAPES = [
    {
        "event": "CREATED",
        "integrationId": INTEGRATION_ID,
        "name": "SMS support",
        "channelProviderId": CHANNEL_PROVIDER_ID,
        "accountId": ACCOUNT_ID,
    },
    {
        "eventType": "INTEGRATION_CREATED",
        "id": "evt-1",
        "timestamp": "2026-11-24T01:00:00Z",
        "integration": {
            "id": INTEGRATION_ID,
            "name": "SMS support",
            "channelProviderId": CHANNEL_PROVIDER_ID,
            "accountId": ACCOUNT_ID,
        },
    },
    {
        "action": "create",
        "businessAccountName": INTEGRATION_ID,
        "name": "SMS support",
        "channelProviderId": CHANNEL_PROVIDER_ID,
        "accountId": ACCOUNT_ID,
    },
    {
        "type": "INTEGRATION",
        "operation": "Created",
        "id": INTEGRATION_ID,
        "name": "SMS support",
        "channelProviderId": CHANNEL_PROVIDER_ID,
        "accountId": ACCOUNT_ID,
        "vendorField": {"a": 1},
    },
    {
        "type": "integration.created",
        "integration": {
            "integrationId": INTEGRATION_ID,
            "integrationName": "SMS support",
            "channelProviderId": CHANNEL_PROVIDER_ID,
            "accountId": ACCOUNT_ID,
        },
    },
]


async def post(
    client: httpx.AsyncClient,
    body: Any,
    *,
    method: str = "POST",
    token_url: str = CALLBACK_URL,
    **kwargs: Any,
) -> httpx.Response:
    if isinstance(body, bytes | str):
        return await client.request(
            method, token_url, content=body, headers={"content-type": "application/json"}, **kwargs
        )
    return await client.request(method, token_url, json=body, **kwargs)


async def assert_nothing_stored(sessionmaker) -> None:
    assert await count(sessionmaker, InboxEvent) == 0
    assert await count(sessionmaker, Integration) == 0
    assert await count(sessionmaker, Delivery) == 0


@pytest.mark.parametrize(
    "body", CREATED_SHAPES, ids=["flat", "nested", "create", "operation", "dotted"]
)
async def test_created_aliases_store_the_integration(client, sessionmaker, body) -> None:
    response = await post(client, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "integrationId": INTEGRATION_ID}
    async with sessionmaker() as session:
        row = await session.get(Integration, INTEGRATION_ID)
        event = await session.scalar(select(InboxEvent))
    assert row is not None
    assert (row.name, row.account_id, row.channel_provider_id, row.status, row.source) == (
        "SMS support",
        ACCOUNT_ID,
        CHANNEL_PROVIDER_ID,
        "active",
        "callback",
    )
    assert row.raw == body  # extra fields kept
    assert event is not None and event.source == "axp.integration" and event.kind == "created"
    assert event.external_id.startswith("sha256:")
    assert json.loads(event.raw_body) == body  # the exact bytes, kept for fixtures
    rows = await deliveries(sessionmaker)
    assert [(d.destination, d.partition_key) for d in rows] == [
        ("akixi.upsert", f"akixi:{INTEGRATION_ID}"),
        ("axp.subscription.ensure", f"axp.subscription:{CHANNEL_PROVIDER_ID}"),
    ]
    assert rows[0].payload == {
        "action": "created",
        "created": True,
        "integration_id": INTEGRATION_ID,
        "name": "SMS support",
        "account_id": ACCOUNT_ID,
        "channel_provider_id": CHANNEL_PROVIDER_ID,
        "changed": ["account_id", "channel_provider_id", "name"],
    }
    assert rows[1].payload == {"channel_provider_id": CHANNEL_PROVIDER_ID}
    assert all(d.inbox_event_id == event.id and d.status == "pending" for d in rows)


@pytest.mark.parametrize(
    "action", ["UPDATED", "update", "INTEGRATION_UPDATED", "IntegrationUpdated"]
)
async def test_updated_aliases_change_the_row(client, sessionmaker, action) -> None:
    await post(client, CREATED_SHAPES[0])
    response = await post(
        client,
        {
            "eventType": action,
            "integrationId": INTEGRATION_ID,
            "name": "SMS sales",
            "channelProviderId": CHANNEL_PROVIDER_ID,
        },
    )
    assert response.status_code == 200
    async with sessionmaker() as session:
        row = await session.get(Integration, INTEGRATION_ID)
    assert row is not None and row.name == "SMS sales" and row.account_id == ACCOUNT_ID
    rows = (await deliveries(sessionmaker))[2:]
    assert [(d.destination, d.partition_key) for d in rows] == [
        ("akixi.upsert", f"akixi:{INTEGRATION_ID}"),
        ("axp.subscription.ensure", f"axp.subscription:{CHANNEL_PROVIDER_ID}"),
    ]
    assert rows[0].payload["action"] == "updated" and rows[0].payload["changed"] == ["name"]
    assert rows[0].payload["created"] is False
    assert rows[0].payload["name"] == "SMS sales"


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("POST", {"event": "DELETED", "integrationId": INTEGRATION_ID}),
        ("POST", {"action": "delete", "id": INTEGRATION_ID}),
        ("POST", {"eventType": "INTEGRATION_DELETED", "integration": {"id": INTEGRATION_ID}}),
        ("DELETE", {"integrationId": INTEGRATION_ID}),
        ("DELETE", {"event": "DELETED", "businessAccountName": INTEGRATION_ID}),
    ],
)
async def test_deleted_disables_mapped_channels(client, sessionmaker, method, body) -> None:
    await post(client, CREATED_SHAPES[0])
    await add_channel(client)
    response = await post(client, body, method=method)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "integrationId": INTEGRATION_ID}
    async with sessionmaker() as session:
        row = await session.get(Integration, INTEGRATION_ID)
    assert row is not None and row.status == "deleted" and row.deleted_at is not None
    last = (await deliveries(sessionmaker))[-1]
    assert (last.destination, last.partition_key) == ("akixi.delete", f"akixi:{INTEGRATION_ID}")
    assert (
        last.payload["integration_id"] == INTEGRATION_ID and last.payload["name"] == "SMS support"
    )
    channel = (await client.get("/admin/v1/channels/+15559870000", headers=ADMIN)).json()
    assert channel["enabled"] is False
    assert channel["disabled_reason"].startswith(
        f"integration {INTEGRATION_ID} deleted via AXP callback at "
    )


async def test_duplicate_callback_is_stored_once_with_the_same_answer(client, sessionmaker) -> None:
    first = await post(client, CREATED_SHAPES[1])
    second = await post(client, CREATED_SHAPES[1])
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json() == second.json()
    assert await count(sessionmaker, InboxEvent) == 1
    assert await count(sessionmaker, Integration) == 1
    assert len(await deliveries(sessionmaker)) == 2


async def test_same_body_after_a_change_in_between_is_applied_again(client, sessionmaker) -> None:
    """A->B->A->B: the fourth body equals the second but is a new change."""
    body_a = {"event": "UPDATED", "integrationId": INTEGRATION_ID, "name": "A"}
    body_b = {"event": "UPDATED", "integrationId": INTEGRATION_ID, "name": "B"}
    for body in (body_a, body_b, body_a, body_b):
        assert (await post(client, body)).status_code == 200
    async with sessionmaker() as session:
        row = await session.get(Integration, INTEGRATION_ID)
    assert row is not None and row.name == "B"
    names = [d.payload["name"] for d in await deliveries(sessionmaker)]
    assert names == ["A", "B", "A", "B"]
    # A true retry of the last one changes nothing.
    assert (await post(client, body_b)).status_code == 200
    assert await count(sessionmaker, InboxEvent) == 4


# Each of these got a 422 (or 405) before the reader learnt the shape: an AXP administrator's
# operation would have failed. Every one is applied, and stored once however often it comes.
REFUSED_BEFORE = [
    pytest.param(
        "POST",
        "",
        {"event": "ADD", "integrationId": INTEGRATION_ID, "name": "SMS support"},
        ("active", "SMS support"),
        id="verb-add",
    ),
    pytest.param(
        "POST",
        "",
        {"action": "UPSERT", "id": INTEGRATION_ID, "name": "SMS support"},
        ("active", "SMS support"),
        id="verb-upsert",
    ),
    pytest.param(
        "POST",
        "",
        {"integrationId": INTEGRATION_ID, "status": "ACTIVE", "name": "SMS support"},
        ("active", "SMS support"),
        id="status-only-active",
    ),
    pytest.param(
        "POST",
        "",
        {
            "integrationId": INTEGRATION_ID,
            "changes": [{"field": "name", "oldValue": None, "newValue": "SMS support"}],
        },
        ("active", "SMS support"),
        id="change-list",
    ),
    pytest.param(
        "POST",
        "",
        {
            "businessAccountName": INTEGRATION_ID,
            "patch": [{"op": "replace", "path": "/name", "value": "SMS support"}],
        },
        ("active", "SMS support"),
        id="json-patch-list",
    ),
    pytest.param(
        "POST",
        "",
        {
            "EventType": "INTEGRATION_CREATED",
            "integration_id": INTEGRATION_ID,
            "Name": "SMS support",
            "accountid": ACCOUNT_ID,
            "channelproviderid": CHANNEL_PROVIDER_ID,
        },
        ("active", "SMS support"),
        id="key-case",
    ),
    pytest.param(
        "POST",
        "",
        {
            "eventType": "integration.updated",
            "data": {"integrationId": INTEGRATION_ID, "name": "SMS support"},
        },
        ("active", "SMS support"),
        id="data-envelope",
    ),
    pytest.param(
        "PUT",
        f"/{INTEGRATION_ID}",
        {"name": "SMS support"},
        ("active", "SMS support"),
        id="put-on-the-integration",
    ),
    pytest.param(
        "POST",
        "",
        {"integrationId": INTEGRATION_ID, "status": "DELETED"},
        ("deleted", None),
        id="status-only-deleted",
    ),
    pytest.param("DELETE", f"/{INTEGRATION_ID}", b"", ("deleted", None), id="delete-empty-body"),
    pytest.param(
        "POST",
        "?integrationId=" + INTEGRATION_ID,
        {"event": "REMOVED"},
        ("deleted", None),
        id="id-in-query",
    ),
]


@pytest.mark.parametrize(("method", "suffix", "body", "expected"), REFUSED_BEFORE)
async def test_shapes_refused_before_are_applied_and_stored_once(
    client, sessionmaker, method, suffix, body, expected
) -> None:
    url = CALLBACK_URL + suffix
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    first = await post(client, raw, method=method, token_url=url)
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "accepted", "integrationId": INTEGRATION_ID}
    queued = len(await deliveries(sessionmaker))
    for _ in range(2):
        again = await post(client, raw, method=method, token_url=url)
        assert (again.status_code, again.json()) == (200, first.json())
    assert await count(sessionmaker, InboxEvent) == 1
    assert len(await deliveries(sessionmaker)) == queued >= 1  # no mirror call twice
    async with sessionmaker() as session:
        row = await session.get(Integration, INTEGRATION_ID)
        event = await session.scalar(select(InboxEvent))
    assert row is not None and (row.status, row.name) == expected
    assert event is not None and event.status == "received"
    assert (event.kind == "deleted") == (expected[0] == "deleted")
    assert event.raw_body == raw.decode()  # the exact bytes


async def test_account_case_variant_is_stored(client, sessionmaker) -> None:
    body = {"Action": "created", "IntegrationId": INTEGRATION_ID, "AccountID": ACCOUNT_ID}
    assert (await post(client, body)).status_code == 200
    async with sessionmaker() as session:
        row = await session.get(Integration, INTEGRATION_ID)
    assert row is not None and row.account_id == ACCOUNT_ID


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_bad_token_is_404_and_stores_nothing(client, sessionmaker, method) -> None:
    response = await post(
        client,
        CREATED_SHAPES[0],
        method=method,
        token_url="/axp/callbacks/not-the-token/integrations",
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    unknown_path = await client.post("/axp/callbacks/not-the-token/nothing-here", json={})
    assert response.json() == unknown_path.json()  # reveals nothing
    for_one = await post(
        client,
        b"",
        method=method,
        token_url=f"/axp/callbacks/not-the-token/integrations/{INTEGRATION_ID}",
    )
    assert (for_one.status_code, for_one.json()) == (404, unknown_path.json())
    await assert_nothing_stored(sessionmaker)


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b'{"event": "CREATED",'])
async def test_malformed_json_is_400_and_stores_nothing(client, sessionmaker, raw) -> None:
    response = await post(client, raw)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    await assert_nothing_stored(sessionmaker)


async def test_too_large_is_413_and_stores_nothing(database_url, engine, sessionmaker) -> None:
    settings = make_settings(database_url, max_body_bytes=256)
    async with running_app(settings) as (_app, client):
        response = await post(client, {**CREATED_SHAPES[0], "padding": "x" * 300})
    assert response.status_code == 413
    await assert_nothing_stored(sessionmaker)


async def test_answer_does_not_call_akixi_or_axp(database_url, engine, sessionmaker) -> None:
    """Every upstream unreachable: the callback still answers 200 (it only commits and queues)."""
    settings = make_settings(
        database_url, akixi_url="https://akixi.test/ws", axp_base_url="https://axp.test"
    )
    with respx.mock(assert_all_called=False) as upstream:
        unreachable = upstream.route().mock(side_effect=httpx.ConnectError("down"))
        async with running_app(settings) as (_app, client):
            response = await post(client, CREATED_SHAPES[0])
            deleted = await post(client, {"event": "DELETED", "integrationId": INTEGRATION_ID})
    assert (response.status_code, deleted.status_code) == (200, 200)
    assert unreachable.call_count == 0
    assert await count(sessionmaker, Integration) == 1
    assert [d.destination for d in await deliveries(sessionmaker)] == [
        "akixi.upsert",
        "axp.subscription.ensure",
        "akixi.delete",
    ]


def test_action_words() -> None:
    assert [
        parse_action(v)
        for v in (
            "CREATED",
            "create",
            "INTEGRATION_CREATED",
            "integration.updated",
            "IntegrationDeleted",
            "DELETE",
            "delete_integration",
        )
    ] == ["created", "created", "created", "updated", "deleted", "deleted", "deleted"]
    assert [parse_action(v) for v in ("ADD", "upsert", "Integration.Removed", "MODIFIED")] == [
        "created",
        "updated",
        "deleted",
        "updated",
    ]
    assert [parse_action(v) for v in ("INTEGRATION", "ARCHIVED", "", None, 3)] == [None] * 5


def test_status_words() -> None:
    assert [parse_status(v) for v in ("ACTIVE", "enabled", "DELETED", "removed", "CREATED")] == [
        "updated",
        "updated",
        "deleted",
        "deleted",
        "created",
    ]
    assert [parse_status(v) for v in ("INACTIVE", "DISABLED", "PENDING", None)] == [None] * 4
