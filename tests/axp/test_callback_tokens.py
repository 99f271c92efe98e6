"""Each AXP callback route has its own token, and each accepts its previous value while AXP
moves to a new one; a token of one route never opens the other (a wrong one is a 404)."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import func, select

from channel_bridge.db.models import InboxEvent, Integration
from channel_bridge.settings import Settings
from tests.axp.conftest import ACCOUNT_ID, callback_examples
from tests.conftest import make_settings, running_app

NOTIFY, NOTIFY_OLD, LIFECYCLE, LIFECYCLE_OLD = (secrets.token_urlsafe(36) for _ in range(4))
EVENT = "Message-Event-Messaging-Customer-To-Agent-Image"


def lifecycle_body(integration_id: str) -> dict[str, str]:
    return {
        "event": "CREATED",
        "integrationId": integration_id,
        "name": "SMS support",
        "channelProviderId": "provider-1",
        "accountId": ACCOUNT_ID,
    }


async def count(sessionmaker, model) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_notification_and_lifecycle_tokens_rotate_separately(database_url, engine) -> None:
    settings = make_settings(
        database_url,
        axp_account_id=ACCOUNT_ID,
        axp_callback_token=NOTIFY,
        axp_callback_token_previous=NOTIFY_OLD,
        axp_lifecycle_token=LIFECYCLE,
        axp_lifecycle_token_previous=LIFECYCLE_OLD,
    )
    event = callback_examples()[EVENT]
    async with running_app(settings) as (app, client):
        sessionmaker = app.state_now.sessionmaker
        for token in (NOTIFY, NOTIFY_OLD):
            response = await client.post(f"/axp/callbacks/{token}/notifications", json=event)
            assert response.status_code == 200, response.text
        for token in (LIFECYCLE, LIFECYCLE_OLD, "x" * 40):
            response = await client.post(f"/axp/callbacks/{token}/notifications", json=event)
            assert response.status_code == 404
        assert await count(sessionmaker, InboxEvent) == 1  # the second was a redelivery

        for number, token in enumerate((LIFECYCLE, LIFECYCLE_OLD)):
            response = await client.post(
                f"/axp/callbacks/{token}/integrations", json=lifecycle_body(f"integration-{number}")
            )
            assert response.status_code == 200, response.text
        for token in (NOTIFY, NOTIFY_OLD):
            response = await client.post(
                f"/axp/callbacks/{token}/integrations", json=lifecycle_body("integration-x")
            )
            assert response.status_code == 404
        assert await count(sessionmaker, Integration) == 2


async def test_an_unset_lifecycle_token_keeps_the_notification_tokens(database_url, engine) -> None:
    settings = make_settings(
        database_url, axp_callback_token=NOTIFY, axp_callback_token_previous=NOTIFY_OLD
    )
    async with running_app(settings) as (_app, client):
        for number, token in enumerate((NOTIFY, NOTIFY_OLD)):
            response = await client.post(
                f"/axp/callbacks/{token}/integrations", json=lifecycle_body(f"integration-{number}")
            )
            assert response.status_code == 200, response.text
        response = await client.post(
            f"/axp/callbacks/{'y' * 40}/integrations", json=lifecycle_body("integration-y")
        )
        assert response.status_code == 404


def prod(**values: object) -> Settings:
    base: dict[str, object] = {
        "env": "prod",
        "public_base_url": "https://bridge.test",
        "secret_key": secrets.token_urlsafe(36),
        "admin_token": secrets.token_urlsafe(36),
        "axp_callback_token": NOTIFY,
    }
    return Settings(_env_file=None, _secrets_dir=None, **{**base, **values})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["axp_callback_token_previous", "axp_lifecycle_token", "axp_lifecycle_token_previous"]
)
def test_prod_holds_every_callback_token_to_the_same_rules(name: str) -> None:
    variable = f"BRIDGE_{name.upper()}"
    assert prod(**{name: secrets.token_urlsafe(36)}).problems() == []
    assert prod(**{name: "short-but-random-Zq8"}).problems() == [
        f"{variable} is too short: use at least 32 random characters"
    ]
    assert prod(**{name: "change-me-0123456789abcdef0123456789"}).problems() == [
        f"{variable} holds a placeholder value: set a real secret for BRIDGE_ENV=prod"
    ]
