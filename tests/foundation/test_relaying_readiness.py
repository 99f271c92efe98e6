"""Half-configured relaying is said, not silent: /readyz names what is missing (and stays 200,
since webhooks are still stored for a process that can deliver them), and start-up logs it."""

from __future__ import annotations

from pathlib import Path

from channel_bridge.relay.destinations import DestinationRegistry
from tests.conftest import make_settings, running_app
from tests.support.postgres import free_port

AXP_ONLY = {
    "axp_base_url": "https://axp.test",
    "axp_account_id": "ABCDEF",
    "axp_client_id": "bridge-client",
    "axp_client_secret": "client-secret-0123456789abcdef0123",
    "axp_app_key": "app-key-0123456789abcdef0123456789",
    "axp_subscription_reconcile_enabled": False,
}


async def test_with_only_axp_configured_readyz_says_relaying_is_off_and_why(tmp_path: Path) -> None:
    from channel_bridge.db.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    upgrade(url)
    async with running_app(make_settings(url, **AXP_ONLY)) as (app, client):
        response = await client.get("/readyz")
        registry: DestinationRegistry = app.state_now.destinations
        assert "axp.send_message" not in {d.name for d in registry.all()}
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["relaying"] == {
        "status": "off",
        "reasons": [
            "BRIDGE_NEXUS_BASE_URL is not set: Nexus is not configured, nor is Genesys Cloud "
            "(BRIDGE_GENESYS_CLOUD_*)"
        ],
    }


async def test_fully_configured_relaying_adds_nothing_to_readyz(tmp_path: Path) -> None:
    from channel_bridge.db.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    upgrade(url)
    settings = make_settings(
        url, **AXP_ONLY, nexus_base_url=f"http://127.0.0.1:{free_port()}", nexus_ccid="cc"
    )
    async with running_app(settings) as (_app, client):
        body = (await client.get("/readyz")).json()
    assert body["status"] == "ready" and "relaying" not in body
