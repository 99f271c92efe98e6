"""`channel-bridge nexus provision|provision-sms|capture` against the real database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import respx
from pydantic import SecretStr
from typer.testing import CliRunner

from channel_bridge.cli import app as cli
from channel_bridge.platforms.nexus.provisioning import (
    SMS_SERVICE_BODY,
    ProvisionedChannel,
    async_service_body,
)
from channel_bridge.platforms.nexus.signing import sign
from tests.conftest import FIXTURES, make_settings, running_app
from tests.nexus.channels import add_channel

BASE = "https://nexus.example-tenant.test"
CCID = "45acae06-6b7c-4f97-9c76-471d0c1f2e3a"
API_KEY = "nexus-api-key-0b1c2d3e4f"
PUBLIC = "https://bridge.example-corp.test"
SECRETS = {
    "+16504661149": ("wh-secret-new-aaaa1111", "wh-secret-old-bbbb2222", "api-secret-cccc3333"),
    "sms.example-corp.test": ("wh-secret-dddd4444", None, "api-secret-eeee5555"),
}

# The documented Async service body (seed 003, "Create the Async service"), secrets masked.
EXPECTED_DRY_RUN = {
    "data": {
        "channels": [
            {
                "channelId": "+16504661149",
                "webhook": {"url": f"{PUBLIC}/nexus/channels/+16504661149/webhook"},
            },
            {
                "channelId": "sms.example-corp.test",
                "webhook": {"url": f"{PUBLIC}/nexus/channels/sms.example-corp.test/webhook"},
            },
        ]
    },
    "secret": {
        "channels": [
            {
                "channelId": "+16504661149",
                "webhook": {"secret": "**********"},
                "api": {"secret": "**********"},
            },
            {
                "channelId": "sms.example-corp.test",
                "webhook": {"secret": "**********"},
                "api": {"secret": "**********"},
            },
        ]
    },
}


@pytest.fixture
def cli_env(monkeypatch, database_url):
    settings = make_settings(database_url, public_base_url=PUBLIC)
    env = {
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_ENV": "dev",
        "BRIDGE_PUBLIC_BASE_URL": PUBLIC,
        "BRIDGE_SECRET_KEY": settings.secret_key.get_secret_value(),
        # A real upstream URL: the dev placeholders of these would be refused.
        "BRIDGE_ADMIN_TOKEN": settings.admin_token.get_secret_value(),
        "BRIDGE_AXP_CALLBACK_TOKEN": settings.axp_callback_token.get_secret_value(),
        "BRIDGE_NEXUS_BASE_URL": BASE,
        "BRIDGE_NEXUS_CCID": CCID,
        "BRIDGE_NEXUS_API_KEY": API_KEY,
        "BRIDGE_LOG_FORMAT": "console",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings


async def add_two_channels(sessionmaker, settings) -> None:
    for channel_id, (new, old, api) in SECRETS.items():
        await add_channel(
            sessionmaker,
            settings,
            channel_id,
            webhook_secrets=[s for s in (new, old) if s],
            api_secret=api,
        )
    await add_channel(sessionmaker, settings, "+15550000000", enabled=False)


async def invoke(*args: str):
    # The CLI runs its own event loop (asyncio.run), so it gets a thread of its own.
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


def all_secrets() -> list[str]:
    return [s for triple in SECRETS.values() for s in triple if s] + [API_KEY]


async def test_dry_run_prints_documented_body_with_secrets_masked(cli_env, sessionmaker) -> None:
    await add_two_channels(sessionmaker, cli_env)
    with respx.mock(assert_all_called=False) as mock:
        result = await invoke("nexus", "provision", "--dry-run")
        assert not mock.calls
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == EXPECTED_DRY_RUN
    assert f"POST {BASE}/nexus/v3/provisioning/services/{CCID}/Async" in result.stderr
    for secret in all_secrets():
        assert secret not in result.output


async def test_real_call_sends_secrets_only_on_the_wire(cli_env, sessionmaker) -> None:
    await add_two_channels(sessionmaker, cli_env)
    with respx.mock:
        route = respx.post(f"{BASE}/nexus/v3/provisioning/services/{CCID}/Async").mock(
            return_value=httpx.Response(
                200, json={"status": {"code": 0, "message": "OK"}, "data": {}}
            )
        )
        result = await invoke("nexus", "provision")
    assert result.exit_code == 0, result.output
    request = route.calls.last.request
    assert request.headers["x-api-key"] == API_KEY and request.headers["x-ccid"] == CCID
    assert request.headers["content-type"] == "application/json"
    wire = json.loads(request.content)
    assert wire["data"] == EXPECTED_DRY_RUN["data"]
    # The newest webhook secret (first in the stored list) is the one Nexus signs with.
    assert wire["secret"]["channels"] == [
        {
            "channelId": "+16504661149",
            "webhook": {"secret": "wh-secret-new-aaaa1111"},
            "api": {"secret": "api-secret-cccc3333"},
        },
        {
            "channelId": "sms.example-corp.test",
            "webhook": {"secret": "wh-secret-dddd4444"},
            "api": {"secret": "api-secret-eeee5555"},
        },
    ]
    for secret in all_secrets():
        assert secret not in result.output


async def test_provision_sms_body_and_upstream_error(cli_env, sessionmaker) -> None:
    with respx.mock:
        route = respx.post(f"{BASE}/nexus/v3/provisioning/services/{CCID}/SMS").mock(
            side_effect=[
                httpx.Response(200, json={"status": {"code": 0}}),
                httpx.Response(
                    403, json={"status": {"code": 403, "message": "key lacks permission"}}
                ),
            ]
        )
        ok = await invoke("nexus", "provision-sms")
        refused = await invoke("nexus", "provision-sms")
    assert ok.exit_code == 0, ok.output
    assert json.loads(route.calls[0].request.content) == {
        "url": "N/A",
        "data": {"provider": "Async"},
        "secret": {},
    }
    assert route.calls[0].request.headers["x-api-key"] == API_KEY
    assert (
        refused.exit_code == 1
        and "HTTP 403" in refused.stderr
        and "key lacks permission" in refused.stderr
    )


async def test_clear_errors_for_missing_settings_and_no_channels(
    cli_env, sessionmaker, monkeypatch
) -> None:
    monkeypatch.delenv("BRIDGE_NEXUS_CCID")
    monkeypatch.delenv("BRIDGE_NEXUS_API_KEY")
    result = await invoke("nexus", "provision")
    assert result.exit_code == 1
    assert "BRIDGE_NEXUS_CCID, BRIDGE_NEXUS_API_KEY must be set" in result.stderr
    result = await invoke("nexus", "provision", "--dry-run")
    assert result.exit_code == 1 and "no enabled Nexus channels" in result.stderr


async def test_capture_writes_last_bodies_with_secrets_masked(
    cli_env, sessionmaker, tmp_path: Path
) -> None:
    await add_channel(
        sessionmaker, cli_env, "+16504661149", webhook_secrets=["wh-secret-new-aaaa1111"]
    )
    bodies = [
        b'{"id":"m1","text":"first"}',
        b'{"id":"m2","text":"second","auth":{"token":"tok-123456789"}}',
        b'{"id":"m3","text":"leaks wh-secret-new-aaaa1111 here"}',
    ]
    async with running_app(cli_env) as (_app, client):
        for body in bodies:
            response = await client.post(
                "/nexus/channels/+16504661149/webhook",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature": sign(body, "wh-secret-new-aaaa1111"),
                },
            )
            assert response.status_code == 200
    out = tmp_path / "captured"
    result = await invoke("nexus", "capture", "--last", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(p for p in out.iterdir() if p.name != "manifest.json")
    assert len(files) == 2
    second, third = (json.loads(p.read_text()) for p in files)
    assert second == {"id": "m2", "text": "second", "auth": {"token": "***"}}
    assert third == {"id": "m3", "text": "leaks *** here"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert [entry["masked"] for entry in manifest] == [True, True]
    assert all(entry["channelId"] == "+16504661149" for entry in manifest)
    every = tmp_path / "every"
    assert (await invoke("nexus", "capture", "--last", "10", "--out", str(every))).exit_code == 0
    first = sorted(p for p in every.iterdir() if p.name != "manifest.json")[0]
    # Nothing to mask: the fixture is the exact bytes Nexus sent.
    assert first.read_bytes() == bodies[0]


def test_bodies_have_the_seed_document_shape(settings) -> None:
    channels = [
        ProvisionedChannel(
            channel_id, SecretStr("$asyncWebhookSignatureKey"), SecretStr("$asyncAPISignatureKey")
        )
        for channel_id in ("$asyncPhoneNumber", "$asyncEmailDomain")
    ]
    body = async_service_body(settings, channels)
    for entry in body["data"]["channels"]:
        assert entry["webhook"]["url"].startswith("http://localhost:8080/nexus/channels/")
        entry["webhook"]["url"] = "$asyncWebhookURL"
    assert body == json.loads((FIXTURES / "nexus" / "async_service_seed.json").read_text())
    assert (
        json.loads((FIXTURES / "nexus" / "sms_service_seed.json").read_text()) == SMS_SERVICE_BODY
    )
