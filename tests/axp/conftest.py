"""AXP test helpers: the in-process simulator, settings pointing at it, and spec fixtures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from channel_bridge.platforms.axp.platform import AxpPlatform
from channel_bridge.sandbox.axp import AxpSimulator
from channel_bridge.settings import Settings
from tests.conftest import make_settings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "axp"
SCHEMAS = Path(__file__).parents[1] / "contract" / "schemas" / "axp"

AXP_BASE_URL = "https://na.api.axp.test"
ACCOUNT_ID = "ABCDEF"
CLIENT_ID = "bridge-client"
CLIENT_SECRET = "client-secret-5b9e1c7d3a"
APP_KEY = "app-key-8f2d6a0c4e"


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())["examples"]


def callback_examples() -> dict[str, dict[str, Any]]:
    return load_fixture("notification_callback_examples.json")


def validate_against(schema_file: str, instance: Any) -> None:
    """Raise jsonschema.ValidationError unless `instance` matches the trimmed vendor schema."""
    schema = json.loads((SCHEMAS / schema_file).read_text())
    jsonschema.Draft202012Validator(schema).validate(instance)


def axp_settings(database_url: str = "sqlite+aiosqlite:///:memory:", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "axp_base_url": AXP_BASE_URL,
        "axp_account_id": ACCOUNT_ID,
        "axp_client_id": CLIENT_ID,
        "axp_client_secret": CLIENT_SECRET,
        "axp_app_key": APP_KEY,
        "public_base_url": "https://bridge.example.com",
        "axp_subscription_reconcile_enabled": False,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


def make_simulator(**options: Any) -> AxpSimulator:
    return AxpSimulator(
        account_id=ACCOUNT_ID,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        app_key=APP_KEY,
        base_url=AXP_BASE_URL,
        **options,
    )


@pytest.fixture
def sim() -> AxpSimulator:
    return make_simulator()


@pytest.fixture
async def platform(sim: AxpSimulator) -> AsyncIterator[AxpPlatform]:
    """AXP clients wired to the simulator in-process."""
    built = AxpPlatform.from_settings(axp_settings(), transport=httpx.ASGITransport(app=sim.app))
    try:
        yield built
    finally:
        await built.aclose()
