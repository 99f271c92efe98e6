"""`check-config` prints no credential of any URL setting: userinfo passwords, a token used as
the userinfo, credential-like query and fragment parameters; everything else stays readable."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from channel_bridge.settings import mask_url
from tests.foundation.test_cli import prod_env, run

CREDENTIALS = {f"cred{n}": secrets.token_urlsafe(18) for n in range(8)}
C = CREDENTIALS


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"postgresql://bridge:{C['cred0']}@db:5432/b", "postgresql://bridge:***@db:5432/b"),
        (f"https://{C['cred1']}@axp.test/api", "https://***@axp.test/api"),
        (
            f"https://akixi.test/CCS?user=u&password={C['cred2']}&sslmode=require",
            "https://akixi.test/CCS?user=u&password=***&sslmode=require",
        ),
        (
            f"https://n.test/?api_key={C['cred3']}&X-Amz-Signature={C['cred4']}&page=2",
            "https://n.test/?api_key=***&X-Amz-Signature=***&page=2",
        ),
        (f"https://n.test/cb#access_token={C['cred5']}", "https://n.test/cb#access_token=***"),
        (f"https://u:p%40ss{C['cred6']}@h.test", "https://u:***@h.test"),
        ("https://bridge.test/path?x=1", "https://bridge.test/path?x=1"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_check_config_masks_every_credential_in_every_url(tmp_path: Path) -> None:
    env = prod_env(
        BRIDGE_DATABASE_URL=(
            f"postgresql://bridge:{C['cred0']}@db.internal:5432/bridge?password={C['cred1']}"
        ),
        BRIDGE_AXP_BASE_URL=f"https://{C['cred2']}@na.api.axp.test",
        BRIDGE_NEXUS_BASE_URL=f"https://nexus.test/?apikey={C['cred3']}#token={C['cred4']}",
        BRIDGE_AKIXI_URL=f"https://akixi-user:{C['cred5']}@akixi.test/CCS/Service?sid={C['cred6']}",
    )
    result = run(["check-config"], env, tmp_path)
    output = result.stdout + result.stderr
    leaked = [name for name, value in CREDENTIALS.items() if value in output]
    assert not leaked, f"printed in clear: {leaked}\n{output}"
    shown = json.loads(result.stdout)
    assert shown["BRIDGE_DATABASE_URL"] == (
        "postgresql+asyncpg://bridge:***@db.internal:5432/bridge?password=***"
    )
    assert shown["BRIDGE_AXP_BASE_URL"] == "https://***@na.api.axp.test"
    assert shown["BRIDGE_NEXUS_BASE_URL"] == "https://nexus.test/?apikey=***#token=***"
    assert shown["BRIDGE_AKIXI_URL"] == "https://akixi-user:***@akixi.test/CCS/Service?sid=***"
    assert shown["BRIDGE_PUBLIC_BASE_URL"] == "https://bridge.test"
