"""Integrations through the admin API: the same service as the AXP callback (one code path)."""

from __future__ import annotations

from sqlalchemy import select

from channel_bridge.bridge.integrations import IntegrationDeliveries
from channel_bridge.db.models import InboxEvent, Integration
from channel_bridge.mappings.service import IntegrationService
from channel_bridge.relay.inbox import Inbox
from tests.mappings.conftest import (
    ACCOUNT_ID,
    ADMIN,
    CHANNEL_PROVIDER_ID,
    INTEGRATION_ID,
    add_channel,
    add_integration,
    count,
    deliveries,
)


async def test_create_queues_mirror_and_subscription(client, sessionmaker) -> None:
    created = await add_integration(client)
    assert created["integration_id"] == INTEGRATION_ID
    assert created["status"] == "active" and created["source"] == "admin"
    rows = await deliveries(sessionmaker)
    assert [(d.destination, d.partition_key, d.payload) for d in rows] == [
        (
            "akixi.upsert",
            f"akixi:{INTEGRATION_ID}",
            {
                "action": "created",
                "created": True,
                "integration_id": INTEGRATION_ID,
                "name": "SMS support",
                "account_id": ACCOUNT_ID,
                "channel_provider_id": CHANNEL_PROVIDER_ID,
                "changed": ["account_id", "channel_provider_id", "name"],
            },
        ),
        (
            "axp.subscription.ensure",
            f"axp.subscription:{CHANNEL_PROVIDER_ID}",
            {"channel_provider_id": CHANNEL_PROVIDER_ID},
        ),
    ]
    async with sessionmaker() as session:
        event = await session.scalar(select(InboxEvent))
    assert event is not None and event.source == "axp.integration" and event.kind == "created"
    assert all(d.inbox_event_id == event.id for d in rows)


async def test_create_twice_is_409_and_stores_nothing_more(client, sessionmaker) -> None:
    await add_integration(client)
    again = await client.post(
        "/admin/v1/integrations",
        headers=ADMIN,
        json={"integration_id": INTEGRATION_ID, "name": "other"},
    )
    assert again.status_code == 409
    assert await count(sessionmaker, InboxEvent) == 1
    assert len(await deliveries(sessionmaker)) == 2
    got = await client.get(f"/admin/v1/integrations/{INTEGRATION_ID}", headers=ADMIN)
    assert got.json()["name"] == "SMS support"


async def test_update_queues_only_changed_fields(client, sessionmaker) -> None:
    await add_integration(client)
    updated = await client.patch(
        f"/admin/v1/integrations/{INTEGRATION_ID}",
        headers=ADMIN,
        json={"name": "SMS sales", "account_id": ACCOUNT_ID},
    )
    assert updated.status_code == 200 and updated.json()["name"] == "SMS sales"
    upsert = (await deliveries(sessionmaker))[2]
    assert upsert.destination == "akixi.upsert"
    assert upsert.payload["action"] == "updated" and upsert.payload["changed"] == ["name"]
    assert upsert.partition_key == f"akixi:{INTEGRATION_ID}"
    missing = await client.patch(
        "/admin/v1/integrations/unknown-id", headers=ADMIN, json={"name": "x"}
    )
    assert missing.status_code == 404


async def test_delete_disables_channels_and_shows_why(client, sessionmaker) -> None:
    await add_integration(client)
    await add_channel(client, nexus_channel_id="+15559870000")
    await add_channel(client, nexus_channel_id="+15559870001")
    deleted = await client.delete(f"/admin/v1/integrations/{INTEGRATION_ID}", headers=ADMIN)
    assert deleted.status_code == 200
    assert deleted.json()["disabled_channels"] == ["+15559870000", "+15559870001"]
    assert deleted.json()["integration"]["status"] == "deleted"
    assert deleted.json()["integration"]["deleted_at"] is not None
    channel = (await client.get("/admin/v1/channels/+15559870001", headers=ADMIN)).json()
    assert channel["enabled"] is False
    assert channel["disabled_reason"].startswith(
        f"integration {INTEGRATION_ID} deleted via admin API at "
    )
    last = (await deliveries(sessionmaker))[-1]
    assert (last.destination, last.partition_key) == ("akixi.delete", f"akixi:{INTEGRATION_ID}")
    # Listing hides deleted integrations unless asked; deleting twice is 404.
    assert (await client.get("/admin/v1/integrations", headers=ADMIN)).json() == []
    everything = (
        await client.get("/admin/v1/integrations?include_deleted=true", headers=ADMIN)
    ).json()
    assert [i["integration_id"] for i in everything] == [INTEGRATION_ID]
    assert (
        await client.delete(f"/admin/v1/integrations/{INTEGRATION_ID}", headers=ADMIN)
    ).status_code == 404
    # A disabled channel of a deleted integration cannot be re-enabled.
    enable = await client.patch(
        "/admin/v1/channels/+15559870000", headers=ADMIN, json={"enabled": True}
    )
    assert enable.status_code == 422
    assert enable.json()["errors"][0]["field"] == "body.axp_integration_id"


async def test_recreating_a_deleted_integration_mirrors_it_again(client, sessionmaker) -> None:
    await add_integration(client)
    await client.delete(f"/admin/v1/integrations/{INTEGRATION_ID}", headers=ADMIN)
    again = await add_integration(client, name="SMS support again")
    assert again["status"] == "active" and again["deleted_at"] is None
    upsert = (await deliveries(sessionmaker))[-2]
    assert upsert.destination == "akixi.upsert" and upsert.payload["action"] == "created"


async def test_integration_validation_names_fields(client, sessionmaker) -> None:
    response = await client.post(
        "/admin/v1/integrations",
        headers=ADMIN,
        json={"integration_id": "ab", "account_id": "123456", "channel_provider_id": "x"},
    )
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == [
        "body.account_id",
        "body.channel_provider_id",
        "body.integration_id",
    ]
    assert await count(sessionmaker, Integration) == 0
    assert await count(sessionmaker, InboxEvent) == 0


async def test_text_postgresql_cannot_store_is_422_not_500(client, sessionmaker) -> None:
    """A NUL passes "no whitespace" and "max length" but PostgreSQL text refuses it."""
    created = await client.post(
        "/admin/v1/integrations",
        headers=ADMIN,
        json={"integration_id": "int\u0000-1", "name": "a\u0000b"},
    )
    assert created.status_code == 422
    assert sorted(e["field"] for e in created.json()["errors"]) == [
        "body.integration_id",
        "body.name",
    ]
    await add_integration(client)
    patched = await client.patch(
        f"/admin/v1/integrations/{INTEGRATION_ID}", headers=ADMIN, json={"name": "\u0000"}
    )
    assert patched.status_code == 422
    assert await count(sessionmaker, InboxEvent) == 1  # only the valid create


async def test_service_upsert_for_the_callback_path(sessionmaker) -> None:
    """require_existing=None (the callback): update of an unknown id creates it."""
    service = IntegrationService(
        inbox=Inbox(sessionmaker), sessionmaker=sessionmaker, planner=IntegrationDeliveries()
    )
    change = await service.apply_integration_change(
        action="updated",
        integration_id=INTEGRATION_ID,
        name="n",
        raw={"x": 1},
        source="callback",
        external_id="sha256:abc",
    )
    assert change.is_new and change.changed == ["name"]
    async with sessionmaker() as session:
        row = await session.get(Integration, INTEGRATION_ID)
    assert (
        row is not None
        and row.status == "active"
        and row.raw == {"x": 1}
        and row.source == "callback"
    )
    # No channel provider known: no subscription delivery.
    assert [d.destination for d in await deliveries(sessionmaker)] == ["akixi.upsert"]


async def test_deleting_an_unknown_integration_records_it(sessionmaker) -> None:
    service = IntegrationService(
        inbox=Inbox(sessionmaker), sessionmaker=sessionmaker, planner=IntegrationDeliveries()
    )
    change = await service.apply_integration_change(
        action="deleted",
        integration_id=INTEGRATION_ID,
        raw={},
        source="callback",
        external_id="sha256:def",
    )
    assert change.is_new
    async with sessionmaker() as session:
        row = await session.get(Integration, INTEGRATION_ID)
    assert row is not None and row.status == "deleted" and row.deleted_at is not None
    assert [d.destination for d in await deliveries(sessionmaker)] == ["akixi.delete"]
