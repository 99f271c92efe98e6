"""The real `open_admin`: settings from BRIDGE_* variables, token auth, configuration errors."""

from __future__ import annotations

import pytest
import respx
from typer.testing import CliRunner

from channel_bridge import cli as root_cli
from tests.axp_admin.conftest import ACCOUNT, BASE_URL, INVENTORY, example
from tests.conftest import TEST_ADMIN_TOKEN, TEST_CALLBACK_TOKEN, TEST_SECRET_KEY

ENV = {
    "BRIDGE_AXP_BASE_URL": BASE_URL,
    "BRIDGE_AXP_ACCOUNT_ID": ACCOUNT,
    "BRIDGE_AXP_CLIENT_ID": "bridge-client",
    "BRIDGE_AXP_CLIENT_SECRET": "client-secret-4f9a8b7c6d5e",
    "BRIDGE_AXP_APP_KEY": "app-key-1a2b3c4d5e6f",
    # A real upstream URL: the dev placeholders of these would be refused.
    "BRIDGE_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
    "BRIDGE_AXP_CALLBACK_TOKEN": TEST_CALLBACK_TOKEN,
    "BRIDGE_SECRET_KEY": TEST_SECRET_KEY,
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("BRIDGE_ENV", "dev")
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_commands_use_the_configured_account_and_token(
    environment: pytest.MonkeyPatch, axp: respx.MockRouter
) -> None:
    for name, value in ENV.items():
        environment.setenv(name, value)
    token = axp.post(f"/api/auth/v1/{ACCOUNT}/protocol/openid-connect/token").respond(
        200, json={"access_token": "axp-token-7c6b5a", "expires_in": 900}
    )
    body = example("element-inventory", "ElementPage")
    body["pagination"]["total"] = 2
    listed = axp.get(f"{INVENTORY}/elements").respond(200, json=body)

    result = CliRunner().invoke(root_cli.app, ["axp", "elements", "list", "--json"])

    assert result.exit_code == 0, result.output
    assert token.call_count == 1
    sent = listed.calls.last.request
    assert sent.headers["authorization"] == "Bearer axp-token-7c6b5a"
    assert sent.headers["appkey"] == "app-key-1a2b3c4d5e6f"


def test_missing_settings_are_a_configuration_error(
    environment: pytest.MonkeyPatch, axp: respx.MockRouter
) -> None:
    catch_all = axp.route().respond(500)
    environment.setenv("BRIDGE_SANDBOX", "false")  # else the served sandbox is used

    result = CliRunner().invoke(root_cli.app, ["axp", "numbers", "list"])

    assert result.exit_code == 2
    assert result.stderr.startswith("configuration error: BRIDGE_AXP_BASE_URL")
    assert not catch_all.called
