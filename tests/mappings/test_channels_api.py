"""Admin API for channel mappings: CRUD, validation with field paths, secrets never shown."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from channel_bridge.db.models import Channel
from channel_bridge.security import SecretBox
from tests.mappings.conftest import (
    ACCOUNT_ID,
    ADMIN,
    API_SECRET,
    CHANNEL_PROVIDER_ID,
    INTEGRATION_ID,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_OLD,
    add_channel,
    add_integration,
    count,
)

SECRET_VALUES = (WEBHOOK_SECRET, WEBHOOK_SECRET_OLD, API_SECRET)


def assert_no_secret(text: str) -> None:
    for value in SECRET_VALUES:
        assert value not in text
    assert "webhook_secrets_encrypted" not in text and "api_secret_encrypted" not in text


async def test_admin_routes_require_the_bearer_token(client) -> None:
    for method, path in [
        ("GET", "/admin/v1/channels"),
        ("POST", "/admin/v1/channels"),
        ("GET", "/admin/v1/channels/+15559870000"),
        ("PATCH", "/admin/v1/channels/+15559870000"),
        ("POST", "/admin/v1/channels/+15559870000/disable"),
        ("DELETE", "/admin/v1/channels/+15559870000"),
        ("GET", "/admin/v1/integrations"),
        ("POST", "/admin/v1/integrations"),
        ("DELETE", f"/admin/v1/integrations/{INTEGRATION_ID}"),
    ]:
        for headers in ({}, {"authorization": "Bearer wrong-token"}):
            response = await client.request(method, path, json={}, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["www-authenticate"] == "Bearer"


async def test_create_get_list_update_disable_delete(client, sessionmaker) -> None:
    await add_integration(client)
    created = await add_channel(client)
    assert created["nexus_channel_id"] == "+15559870000"
    # Account and channel provider come from the integration; defaults from the spec.
    assert created["axp_account_id"] == ACCOUNT_ID
    assert created["axp_channel_provider_id"] == CHANNEL_PROVIDER_ID
    assert created["axp_channel_id"] == "Messaging"
    assert created["customer_identifier_key"] == "phoneNumbers"
    assert created["enabled"] is True and created["disabled_reason"] is None
    assert created["has_webhook_secret"] is True and created["webhook_secret_count"] == 1
    assert created["has_api_secret"] is True

    got = await client.get("/admin/v1/channels/+15559870000", headers=ADMIN)
    assert got.status_code == 200 and got.json() == created
    listed = await client.get("/admin/v1/channels", headers=ADMIN)
    assert [c["nexus_channel_id"] for c in listed.json()] == ["+15559870000"]

    patched = await client.patch(
        "/admin/v1/channels/+15559870000",
        headers=ADMIN,
        json={
            "customer_identifier_key": "mobile",
            "webhook_secrets": [WEBHOOK_SECRET, WEBHOOK_SECRET_OLD],
        },
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["customer_identifier_key"] == "mobile"
    assert patched.json()["webhook_secret_count"] == 2

    disabled = await client.post(
        "/admin/v1/channels/+15559870000/disable",
        headers=ADMIN,
        json={"reason": "number ported away"},
    )
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    assert disabled.json()["disabled_reason"] == "number ported away"

    enabled = await client.patch(
        "/admin/v1/channels/+15559870000", headers=ADMIN, json={"enabled": True}
    )
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] is None

    deleted = await client.delete("/admin/v1/channels/+15559870000", headers=ADMIN)
    assert deleted.status_code == 204
    assert await count(sessionmaker, Channel) == 0
    missing = await client.get("/admin/v1/channels/+15559870000", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_secrets_are_stored_encrypted_and_never_returned(
    client, sessionmaker, settings
) -> None:
    await add_integration(client)
    responses = [
        await client.post(
            "/admin/v1/channels",
            headers=ADMIN,
            json={
                "nexus_channel_id": "+15559870000",
                "axp_integration_id": INTEGRATION_ID,
                "webhook_secrets": [WEBHOOK_SECRET, WEBHOOK_SECRET_OLD],
                "api_secret": API_SECRET,
            },
        )
    ]
    responses.append(await client.get("/admin/v1/channels", headers=ADMIN))
    responses.append(await client.get("/admin/v1/channels/+15559870000", headers=ADMIN))
    responses.append(
        await client.patch(
            "/admin/v1/channels/+15559870000", headers=ADMIN, json={"api_secret": API_SECRET}
        )
    )
    responses.append(await client.post("/admin/v1/channels/+15559870000/disable", headers=ADMIN))
    # A rejected request does not echo the secret it carried either.
    responses.append(
        await client.post(
            "/admin/v1/channels",
            headers=ADMIN,
            json={
                "nexus_channel_id": "bad id",
                "axp_integration_id": INTEGRATION_ID,
                "api_secret": API_SECRET,
                "webhook_secret": WEBHOOK_SECRET,
                "webhook_secrets": [WEBHOOK_SECRET_OLD],
            },
        )
    )
    for response in responses:
        assert_no_secret(response.text)
    assert responses[0].json()["webhook_secret_count"] == 2

    async with sessionmaker() as session:
        row = await session.scalar(select(Channel))
    assert row is not None
    assert WEBHOOK_SECRET not in row.webhook_secrets_encrypted
    assert API_SECRET not in row.api_secret_encrypted
    box = SecretBox(settings.secret_key)
    assert [s.get_secret_value() for s in box.decrypt_list(row.webhook_secrets_encrypted)] == [
        WEBHOOK_SECRET,
        WEBHOOK_SECRET_OLD,
    ]
    assert box.decrypt(row.api_secret_encrypted).get_secret_value() == API_SECRET


async def test_webhook_secrets_can_be_cleared(client) -> None:
    await add_integration(client)
    await add_channel(client)
    cleared = await client.patch(
        "/admin/v1/channels/+15559870000", headers=ADMIN, json={"webhook_secrets": []}
    )
    assert cleared.json()["has_webhook_secret"] is False
    assert cleared.json()["webhook_secret_count"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"nexus_channel_id": "+0123456"}, "body.nexus_channel_id"),
        ({"nexus_channel_id": "+155"}, "body.nexus_channel_id"),  # 3 digits
        ({"nexus_channel_id": "+1555123456789012"}, "body.nexus_channel_id"),  # 16 digits
        ({"nexus_channel_id": "+15559870000x"}, "body.nexus_channel_id"),
        ({"nexus_channel_id": "+1 555 987 0000"}, "body.nexus_channel_id"),
        ({"nexus_channel_id": "sms channel"}, "body.nexus_channel_id"),
        ({"nexus_channel_id": "x" * 129}, "body.nexus_channel_id"),
        ({"axp_account_id": "DYNNU1"}, "body.axp_account_id"),
        ({"axp_account_id": "DYNNUGX"}, "body.axp_account_id"),
        ({"axp_channel_provider_id": "ab"}, "body.axp_channel_provider_id"),
        ({"axp_channel_provider_id": "p" * 257}, "body.axp_channel_provider_id"),
        ({"axp_integration_id": "ab"}, "body.axp_integration_id"),
        ({"axp_integration_id": "i" * 257}, "body.axp_integration_id"),
        ({"axp_channel_id": "Me"}, "body.axp_channel_id"),
        ({"axp_channel_id": "M" * 51}, "body.axp_channel_id"),
        ({"customer_identifier_key": "k" * 51}, "body.customer_identifier_key"),
        ({"webhook_secrets": ["a", "b", "c", "d", "e", "f"]}, "body.webhook_secrets"),
        ({"webhook_secret": ""}, "body.webhook_secret"),
        ({"unexpected": 1}, "body.unexpected"),
    ],
)
async def test_validation_names_the_field(client, sessionmaker, body, field) -> None:
    await add_integration(client)
    request = {"nexus_channel_id": "+15559870000", "axp_integration_id": INTEGRATION_ID, **body}
    response = await client.post("/admin/v1/channels", headers=ADMIN, json=request)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    fields = [error["field"] for error in response.json()["errors"]]
    assert fields == [field], fields
    assert await count(sessionmaker, Channel) == 0


async def test_accepts_plain_channel_ids_and_e164(client) -> None:
    await add_integration(client)
    for channel_id in ("+1555", "+123456789012345", "sms-gw_01.eu:main"):
        created = await add_channel(client, nexus_channel_id=channel_id)
        assert created["nexus_channel_id"] == channel_id


async def test_both_webhook_secret_fields_is_422(client) -> None:
    await add_integration(client)
    response = await client.post(
        "/admin/v1/channels",
        headers=ADMIN,
        json={
            "nexus_channel_id": "+15559870000",
            "axp_integration_id": INTEGRATION_ID,
            "webhook_secret": WEBHOOK_SECRET,
            "webhook_secrets": [WEBHOOK_SECRET_OLD],
        },
    )
    assert response.status_code == 422
    assert "webhook_secret or webhook_secrets" in response.json()["errors"][0]["message"]


async def test_duplicate_nexus_channel_id_is_409(client, sessionmaker) -> None:
    await add_integration(client)
    await add_channel(client)
    again = await client.post(
        "/admin/v1/channels",
        headers=ADMIN,
        json={"nexus_channel_id": "+15559870000", "axp_integration_id": INTEGRATION_ID},
    )
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert "+15559870000" in again.json()["detail"]
    assert await count(sessionmaker, Channel) == 1


async def test_unknown_or_deleted_integration_is_422(client, sessionmaker) -> None:
    unknown = await client.post(
        "/admin/v1/channels",
        headers=ADMIN,
        json={
            "nexus_channel_id": "+15559870000",
            "axp_integration_id": "no-such-integration",
            "axp_account_id": ACCOUNT_ID,
            "axp_channel_provider_id": CHANNEL_PROVIDER_ID,
        },
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.axp_integration_id"
    assert "unknown integration" in unknown.json()["errors"][0]["message"]

    await add_integration(client)
    assert (
        await client.delete(f"/admin/v1/integrations/{INTEGRATION_ID}", headers=ADMIN)
    ).status_code == 200
    deleted = await client.post(
        "/admin/v1/channels",
        headers=ADMIN,
        json={"nexus_channel_id": "+15559870000", "axp_integration_id": INTEGRATION_ID},
    )
    assert deleted.status_code == 422
    assert deleted.json()["errors"][0]["field"] == "body.axp_integration_id"
    assert "was deleted" in deleted.json()["errors"][0]["message"]
    assert await count(sessionmaker, Channel) == 0


async def test_channel_must_fit_its_integration(client) -> None:
    await add_integration(client)
    response = await client.post(
        "/admin/v1/channels",
        headers=ADMIN,
        json={
            "nexus_channel_id": "+15559870000",
            "axp_integration_id": INTEGRATION_ID,
            "axp_account_id": "OTHERX",
            "axp_channel_provider_id": "another-provider",
        },
    )
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == [
        "body.axp_account_id",
        "body.axp_channel_provider_id",
    ]


async def test_integration_without_provider_needs_it_on_the_channel(client) -> None:
    await add_integration(client, channel_provider_id=None, account_id=None)
    missing = await client.post(
        "/admin/v1/channels",
        headers=ADMIN,
        json={"nexus_channel_id": "+15559870000", "axp_integration_id": INTEGRATION_ID},
    )
    assert missing.status_code == 422
    assert sorted(e["field"] for e in missing.json()["errors"]) == [
        "body.axp_account_id",
        "body.axp_channel_provider_id",
    ]
    created = await add_channel(
        client, axp_account_id=ACCOUNT_ID, axp_channel_provider_id=CHANNEL_PROVIDER_ID
    )
    assert created["axp_channel_provider_id"] == CHANNEL_PROVIDER_ID


async def test_patch_rejects_null_and_unknown_channel(client) -> None:
    await add_integration(client)
    await add_channel(client)
    null = await client.patch(
        "/admin/v1/channels/+15559870000", headers=ADMIN, json={"axp_channel_id": None}
    )
    assert null.status_code == 422
    missing = await client.patch(
        "/admin/v1/channels/+15550000000", headers=ADMIN, json={"axp_channel_id": "Messaging"}
    )
    assert missing.status_code == 404


async def test_moving_a_channel_to_another_integration_takes_its_coordinates(client) -> None:
    await add_integration(client)
    await add_integration(
        client,
        integration_id="second-integration",
        account_id="QWERTY",
        channel_provider_id="second-provider",
    )
    await add_channel(client)
    moved = await client.patch(
        "/admin/v1/channels/+15559870000",
        headers=ADMIN,
        json={"axp_integration_id": "second-integration"},
    )
    assert moved.status_code == 200, moved.text
    assert (
        moved.json()["axp_integration_id"],
        moved.json()["axp_account_id"],
        moved.json()["axp_channel_provider_id"],
    ) == ("second-integration", "QWERTY", "second-provider")
    unknown = await client.patch(
        "/admin/v1/channels/+15559870000",
        headers=ADMIN,
        json={"axp_integration_id": "missing-integration"},
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.axp_integration_id"
    still = (await client.get("/admin/v1/channels/+15559870000", headers=ADMIN)).json()
    assert still["axp_integration_id"] == "second-integration"


async def test_a_channel_names_its_backend(client, sessionmaker) -> None:
    await add_integration(client)
    nexus = await add_channel(client)
    assert nexus["backend"] == "nexus"
    gc = await add_channel(
        client,
        nexus_channel_id="c6b0e62f-8487-44fd-a218-c16e006a7a23",
        backend="genesys-cloud",
        webhook_secret="gc-signature-secret-token-5e1b",
        api_secret=None,
    )
    assert gc["backend"] == "genesys-cloud"
    assert gc["has_webhook_secret"] is True
    assert "gc-signature-secret-token-5e1b" not in str(gc)
    listed = await client.get("/admin/v1/channels", headers=ADMIN)
    assert sorted(c["backend"] for c in listed.json()) == ["genesys-cloud", "nexus"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"backend": "genesys"}, "backend"),
        ({"backend": "genesys-cloud", "webhook_secret": "short-secret"}, None),
    ],
)
async def test_a_bad_backend_or_a_short_genesys_cloud_secret_is_refused(
    client, changes, field
) -> None:
    await add_integration(client)
    body = {
        "nexus_channel_id": "c6b0e62f-8487-44fd-a218-c16e006a7a23",
        "axp_integration_id": INTEGRATION_ID,
        **changes,
    }
    response = await client.post("/admin/v1/channels", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    text = response.text
    assert (field or "16 characters") in text
    assert "short-secret" not in text
