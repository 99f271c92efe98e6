"""The `channel-bridge` console script at the process boundary: bad prod settings stop it with
one line naming the variable (nothing starts), check-config masks secrets, `python -m` works.

Each run gets a clean environment and an empty working directory, so no .env, no secrets
dir and no variable of the calling shell changes the outcome.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import free_port

CONSOLE_SCRIPT = Path(sys.executable).parent / "channel-bridge"


def random_secret() -> str:
    return secrets.token_urlsafe(36)


def prod_env(**overrides: str) -> dict[str, str]:
    """A complete, usable prod configuration (with real-looking random secrets)."""
    env = {
        "BRIDGE_ENV": "prod",
        "BRIDGE_PUBLIC_BASE_URL": "https://bridge.test",
        "BRIDGE_SECRET_KEY": random_secret(),
        "BRIDGE_ADMIN_TOKEN": random_secret(),
        "BRIDGE_AXP_CALLBACK_TOKEN": random_secret(),
        # Both platforms the bridge relays between: check-config fails prod without them.
        "BRIDGE_AXP_BASE_URL": "https://axp.test",
        "BRIDGE_AXP_ACCOUNT_ID": "ABCDEF",
        "BRIDGE_AXP_CLIENT_ID": "bridge-client",
        "BRIDGE_AXP_CLIENT_SECRET": random_secret(),
        "BRIDGE_AXP_APP_KEY": random_secret(),
        "BRIDGE_NEXUS_BASE_URL": "https://nexus.test",
        "BRIDGE_NEXUS_CCID": "ccid-1",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def run(
    args: list[str], env: dict[str, str], cwd: Path, executable: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        # Not the default /run/secrets/channel-bridge of the machine running the tests.
        "BRIDGE_SECRETS_DIR": str(cwd / "no-secrets-here"),
        **env,
    }
    command = (executable or [str(CONSOLE_SCRIPT)]) + args
    # A server that wrongly started would never exit: the timeout turns that into a failure.
    return subprocess.run(command, env=clean, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_console_script_is_installed() -> None:
    assert CONSOLE_SCRIPT.is_file(), "pip install -e . creates the channel-bridge script"


@pytest.mark.parametrize(
    "command",
    [
        ["check-config"],
        ["serve", "--host", "127.0.0.1", "--port", "{port}"],
        ["migrate"],
    ],
)
def test_prod_without_secret_key_exits_non_zero_with_one_line(
    command: list[str], tmp_path: Path
) -> None:
    port = str(free_port())
    env = prod_env()
    del env["BRIDGE_SECRET_KEY"]
    result = run([part.replace("{port}", port) for part in command], env, tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "BRIDGE_SECRET_KEY" in lines[0]
    # Nothing started: no server banner, no database file created for migrate.
    assert "Uvicorn running" not in result.stderr + result.stdout
    assert "bridge starting" not in result.stderr + result.stdout
    assert not (tmp_path / "var").exists()


def test_check_config_prints_settings_with_secrets_masked(tmp_path: Path) -> None:
    db_password = random_secret()
    env = prod_env(
        BRIDGE_DATABASE_URL=f"postgresql://bridge:{db_password}@db.internal:5432/bridge",
        BRIDGE_AXP_CLIENT_SECRET=random_secret(),
        BRIDGE_NEXUS_API_KEY=random_secret(),
        BRIDGE_AKIXI_PASSWORD=random_secret(),
    )
    result = run(["check-config", "--offline"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for name, value in env.items():
        if name.endswith(("_SECRET", "_KEY", "_TOKEN", "_PASSWORD")):
            assert value not in output, f"{name} printed in clear"
    assert db_password not in output
    shown = json.loads(result.stdout)
    for name in (
        "BRIDGE_SECRET_KEY",
        "BRIDGE_ADMIN_TOKEN",
        "BRIDGE_AXP_CALLBACK_TOKEN",
        "BRIDGE_AXP_CLIENT_SECRET",
        "BRIDGE_NEXUS_API_KEY",
        "BRIDGE_AKIXI_PASSWORD",
    ):
        assert shown[name] == "**********", name
    # The URL is shown (rewritten to the async driver), its password is not.
    assert shown["BRIDGE_DATABASE_URL"] == "postgresql+asyncpg://bridge:***@db.internal:5432/bridge"
    assert shown["BRIDGE_ENV"] == "prod"


def test_python_dash_m_runs_the_same_cli(tmp_path: Path) -> None:
    result = run(["--help"], {}, tmp_path, executable=[sys.executable, "-m", "channel_bridge"])
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "check-config"):
        assert command in result.stdout
