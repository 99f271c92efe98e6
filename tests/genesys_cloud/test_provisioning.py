"""`channel-bridge genesys-cloud provision` against the real database, Genesys Cloud on respx."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import respx
from sqlalchemy import select
from typer.testing import CliRunner

from channel_bridge.cli import app as cli
from channel_bridge.db.models import Channel, Integration
from channel_bridge.security import SecretBox
from tests.conftest import make_settings
from tests.genesys_cloud.conftest import (
    API_BASE_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    INTEGRATION_ID,
    LOGIN_BASE_URL,
)

PUBLIC = "https://bridge.example-corp.test"
CREATE_URL = f"{API_BASE_URL}/api/v2/conversations/messaging/integrations/open"


@pytest.fixture
def cli_env(monkeypatch, database_url):
    settings = make_settings(database_url, public_base_url=PUBLIC)
    env = {
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_ENV": "dev",
        "BRIDGE_PUBLIC_BASE_URL": PUBLIC,
        "BRIDGE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "BRIDGE_GENESYS_CLOUD_CLIENT_ID": CLIENT_ID,
        "BRIDGE_GENESYS_CLOUD_CLIENT_SECRET": CLIENT_SECRET,
        "BRIDGE_GENESYS_CLOUD_API_BASE_URL": API_BASE_URL,
        "BRIDGE_GENESYS_CLOUD_LOGIN_BASE_URL": LOGIN_BASE_URL,
        "BRIDGE_LOG_FORMAT": "console",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings


async def invoke(*args: str):
    # The CLI runs its own event loop (asyncio.run), so it gets a thread of its own.
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def add_axp_integration(sessionmaker) -> None:
    async with sessionmaker() as session, session.begin():
        session.add(
            Integration(
                integration_id="integration-1",
                name="Test",
                account_id="ACCONE",
                channel_provider_id="provider-1",
            )
        )


def mock_genesys(mock: respx.MockRouter) -> tuple[respx.Route, respx.Route]:
    mock.post(f"{LOGIN_BASE_URL}/oauth/token").mock(
        return_value=httpx.Response(200, json={"access_token": "t-1", "expires_in": 86400})
    )
    create = mock.post(CREATE_URL).mock(
        return_value=httpx.Response(200, json={"id": INTEGRATION_ID, "name": "Bridge"})
    )
    update = mock.patch(f"{CREATE_URL}/{INTEGRATION_ID}").mock(
        return_value=httpx.Response(200, json={"id": INTEGRATION_ID, "name": "Bridge"})
    )
    return create, update


async def test_provision_creates_the_integration_and_its_channel(cli_env, sessionmaker) -> None:
    await add_axp_integration(sessionmaker)
    with respx.mock(assert_all_called=True) as mock:
        create, update = mock_genesys(mock)
        result = await invoke(
            "genesys-cloud", "provision", "--name", "Bridge", "--integration", "integration-1"
        )
    assert result.exit_code == 0, result.output
    sent = json.loads(create.calls[0].request.content)
    secret = sent["outboundNotificationWebhookSignatureSecretToken"]
    assert len(secret) > 15
    assert sent["name"] == "Bridge"
    assert sent["outboundNotificationWebhookUrl"] == (
        f"{PUBLIC}/genesys-cloud/integrations/pending/webhook"
    )
    final = f"{PUBLIC}/genesys-cloud/integrations/{INTEGRATION_ID}/webhook"
    assert json.loads(update.calls[0].request.content) == {
        "name": "Bridge",
        "outboundNotificationWebhookUrl": final,
    }
    assert create.calls[0].request.headers["authorization"] == "Bearer t-1"
    assert secret not in result.output
    async with sessionmaker() as session:
        channel = await session.scalar(select(Channel))
    assert (channel.nexus_channel_id, channel.backend) == (INTEGRATION_ID, "genesys-cloud")
    box = SecretBox(cli_env.secret_key)
    [stored] = box.decrypt_list(channel.webhook_secrets_encrypted)
    assert stored.get_secret_value() == secret
    assert secret not in channel.webhook_secrets_encrypted


async def test_dry_run_sends_and_stores_nothing(cli_env, sessionmaker) -> None:
    with respx.mock(assert_all_called=False) as mock:
        result = await invoke(
            "genesys-cloud", "provision", "--name", "B", "-i", "integration-1", "--dry-run"
        )
        assert not mock.calls
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["outboundNotificationWebhookSignatureSecretToken"] == "**********"
    async with sessionmaker() as session:
        assert await session.scalar(select(Channel)) is None


async def test_a_webhook_off_port_443_is_refused_before_anything_is_sent(
    cli_env, monkeypatch
) -> None:
    monkeypatch.setenv("BRIDGE_PUBLIC_BASE_URL", "https://bridge.example-corp.test:8443")
    with respx.mock(assert_all_called=False) as mock:
        result = await invoke("genesys-cloud", "provision", "--name", "B", "-i", "integration-1")
        assert not mock.calls
    assert result.exit_code == 1
    assert "port 443" in result.output
