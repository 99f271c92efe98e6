"""`channel-bridge axp subscriptions ...` against a mocked AXP edge."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from typer.testing import CliRunner

from channel_bridge.cli import app
from tests.axp.conftest import ACCOUNT_ID, APP_KEY, AXP_BASE_URL, CLIENT_ID, CLIENT_SECRET
from tests.conftest import TEST_ADMIN_TOKEN, TEST_CALLBACK_TOKEN, TEST_SECRET_KEY

SUBS = f"{AXP_BASE_URL}/api/digital/webhook/v1/accounts/{ACCOUNT_ID}/subscriptions"
TOKEN = f"{AXP_BASE_URL}/api/auth/v1/{ACCOUNT_ID}/protocol/openid-connect/token"
SUB_ID = "2581e39b-fe84-4e38-87f4-63a1d037f39a"


@pytest.fixture
def axp_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name, value in {
        "AXP_BASE_URL": AXP_BASE_URL,
        "AXP_ACCOUNT_ID": ACCOUNT_ID,
        "AXP_CLIENT_ID": CLIENT_ID,
        "AXP_CLIENT_SECRET": CLIENT_SECRET,
        "AXP_APP_KEY": APP_KEY,
        "ENV": "dev",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        # A real upstream URL: the dev placeholders of these would be refused.
        "ADMIN_TOKEN": TEST_ADMIN_TOKEN,
        "AXP_CALLBACK_TOKEN": TEST_CALLBACK_TOKEN,
        "SECRET_KEY": TEST_SECRET_KEY,
    }.items():
        monkeypatch.setenv(f"BRIDGE_{name}", value)


def test_list_prints_the_subscriptions(axp_env: None) -> None:
    with respx.mock:
        respx.post(TOKEN).mock(
            return_value=httpx.Response(200, json={"access_token": "t", "expires_in": 900})
        )
        listed = respx.get(SUBS).mock(
            return_value=httpx.Response(
                200,
                json=[
                    {
                        "subscriptionId": SUB_ID,
                        "channelProviderId": "ChatProvider01",
                        "callbackUrl": "https://www.example.com/send/callback/here",
                        "eventTypes": ["MESSAGES"],
                    }
                ],
            )
        )
        result = CliRunner().invoke(
            app, ["axp", "subscriptions", "list", "--channel-provider-id", "ChatProvider01"]
        )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["subscriptionId"] == SUB_ID
    assert listed.calls[0].request.url.params["channelProviderId"] == "ChatProvider01"


def test_delete_reports_axp_errors_on_one_line(axp_env: None) -> None:
    with respx.mock:
        respx.post(TOKEN).mock(
            return_value=httpx.Response(200, json={"access_token": "t", "expires_in": 900})
        )
        respx.delete(f"{SUBS}/{SUB_ID}").mock(
            return_value=httpx.Response(
                404, json={"title": "Not Found", "status": 404, "detail": "No such subscription"}
            )
        )
        result = CliRunner().invoke(app, ["axp", "subscriptions", "delete", SUB_ID])
    assert result.exit_code == 1
    assert (
        "AXP delete subscription failed: HTTP 404 Not Found: No such subscription" in result.output
    )


def test_unconfigured_axp_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_AXP_BASE_URL", raising=False)
    monkeypatch.setenv("BRIDGE_SANDBOX", "false")  # else the served sandbox is used
    result = CliRunner().invoke(app, ["axp", "subscriptions", "list"])
    assert result.exit_code == 2
    assert "BRIDGE_AXP_BASE_URL" in result.output
