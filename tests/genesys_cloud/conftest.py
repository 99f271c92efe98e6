"""Settings and channel rows for the Genesys Cloud tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from channel_bridge.settings import Settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "genesys_cloud"
INTEGRATION_ID = "c6b0e62f-8487-44fd-a218-c16e006a7a23"
WEBHOOK_SECRET = "gc-signature-secret-token-5e1b7c4d"
CLIENT_ID = "0f8c5a62-3d41-4b7e-a9c2-6e1d0b8f7a35"
CLIENT_SECRET = "gc-client-secret-2d8f7c1a9b3e"
API_BASE_URL = "https://api.gc.test"
LOGIN_BASE_URL = "https://login.gc.test"


def fixture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return document


def gc_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "dev",
        "sandbox": False,
        "genesys_cloud_client_id": CLIENT_ID,
        "genesys_cloud_client_secret": CLIENT_SECRET,
        "genesys_cloud_api_base_url": API_BASE_URL,
        "genesys_cloud_login_base_url": LOGIN_BASE_URL,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type, call-arg]
