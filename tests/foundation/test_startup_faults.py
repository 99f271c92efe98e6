"""Every configuration or connection fault at start-up is one line on stderr naming the variable
and the fix, exit status 2, no traceback, on every entry point; `check-config` connects.

Each case runs the real console script in a clean environment and an empty directory.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from channel_bridge.sandbox.axp import AxpSimulator
from tests.foundation.test_cli import CONSOLE_SCRIPT, prod_env, random_secret, run
from tests.support.postgres import PostgresServer, free_port
from tests.support.servers import LoopbackServer


def assert_one_line_fault(result, *needles: str) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def unreachable_postgres() -> str:
    return f"postgresql://bridge:{random_secret()}@127.0.0.1:{free_port()}/bridge"


ENTRY_POINTS = [
    ["serve", "--host", "127.0.0.1", "--port", "{port}"],
    ["worker"],
    ["migrate"],
    ["deliveries", "list"],
    ["channels", "list"],
]


def _command(command: list[str]) -> list[str]:
    port = str(free_port())
    return [part.replace("{port}", port) for part in command]


@pytest.mark.parametrize("command", ENTRY_POINTS, ids=lambda c: c[0])
def test_an_unreachable_postgresql_is_one_line_on_every_entry_point(
    command: list[str], tmp_path: Path
) -> None:
    url = unreachable_postgres()
    result = run(_command(command), {"BRIDGE_DATABASE_URL": url}, tmp_path)
    line = assert_one_line_fault(result, "BRIDGE_DATABASE_URL", "cannot connect", "127.0.0.1")
    assert url.split(":")[2].split("@")[0] not in line  # the password is never printed
    assert "Uvicorn running" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", [*ENTRY_POINTS, ["check-config"]], ids=lambda c: c[0])
def test_a_malformed_database_url_is_one_line(command: list[str], tmp_path: Path) -> None:
    result = run(_command(command), {"BRIDGE_DATABASE_URL": "notaurl"}, tmp_path)
    assert_one_line_fault(result, "BRIDGE_DATABASE_URL", "postgresql://")


SERVE = ["serve", "--port", "{port}"]


@pytest.mark.parametrize(
    ("variable", "value", "command"),
    [
        ("BRIDGE_LOG_LEVEL", "verbose", SERVE),
        ("BRIDGE_LOG_LEVEL", "verbose", ["check-config"]),
        ("BRIDGE_AXP_BASE_URL", "na.api.avayacloud.com", SERVE),
        ("BRIDGE_AXP_BASE_URL", "na.api.avayacloud.com", ["check-config"]),
        ("BRIDGE_NEXUS_BASE_URL", "nexus.example.net/api", ["check-config"]),
        ("BRIDGE_RETRY_SCHEDULE_S", "5,30", ["check-config"]),
        ("BRIDGE_WORKER_CONCURRENCY", "many", ["worker"]),
    ],
)
def test_a_malformed_setting_is_one_line_naming_it(
    variable: str, value: str, command: list[str], tmp_path: Path
) -> None:
    result = run(_command(command), {variable: value}, tmp_path)
    assert_one_line_fault(result, variable)
    assert "Uvicorn running" not in result.stdout + result.stderr


def test_a_sqlite_file_under_a_missing_directory_is_refused_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    result = run(["migrate"], {"BRIDGE_DATABASE_URL": f"sqlite:///{missing}/bridge.db"}, tmp_path)
    assert_one_line_fault(result, "BRIDGE_DATABASE_URL", str(missing), "mkdir -p")
    assert not missing.parent.exists()


def test_the_default_sqlite_directory_is_still_created(tmp_path: Path) -> None:
    result = run(["migrate"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "bridge.db").is_file()


def test_serve_on_a_database_without_the_schema_says_run_migrate(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    result = run(_command(["serve", "--port", "{port}"]), {}, tmp_path)
    assert_one_line_fault(result, "channel-bridge migrate")


def test_a_missing_postgresql_database_is_named(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.url("no_such_database_here", driver="postgresql")
    result = run(["migrate"], {"BRIDGE_DATABASE_URL": url}, tmp_path)
    assert_one_line_fault(result, "does not exist", "BRIDGE_DATABASE_URL")


def test_check_config_fails_prod_without_the_platforms_it_relays_to(tmp_path: Path) -> None:
    env = prod_env()
    for name in list(env):
        if name.startswith(("BRIDGE_AXP_BASE", "BRIDGE_NEXUS")):
            del env[name]
    result = run(["check-config", "--offline"], env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "configuration error: BRIDGE_AXP_BASE_URL is not set: AXP is not configured "
        "(the bridge relays to it)",
        "configuration error: BRIDGE_NEXUS_BASE_URL is not set: Nexus is not configured, nor is "
        "Genesys Cloud (BRIDGE_GENESYS_CLOUD_*) (the bridge relays to it)",
    ]


def test_check_config_in_dev_warns_that_half_configured_relaying_is_off(tmp_path: Path) -> None:
    env = {
        "BRIDGE_AXP_BASE_URL": "https://axp.test",
        "BRIDGE_SANDBOX": "false",
        # A real upstream URL refuses the dev placeholders (fail closed): real secrets here.
        "BRIDGE_ADMIN_TOKEN": random_secret(),
        "BRIDGE_SECRET_KEY": random_secret(),
        "BRIDGE_AXP_CALLBACK_TOKEN": random_secret(),
    }
    result = run(["check-config", "--offline"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning: BRIDGE_NEXUS_BASE_URL is not set" in result.stderr
    assert "warning: BRIDGE_AXP_ACCOUNT_ID is not set" in result.stderr


def test_check_config_connects_to_the_database(tmp_path: Path) -> None:
    result = run(["check-config"], {}, tmp_path)
    assert result.returncode == 2
    assert "error database: SQLite at ./var/bridge.db has no bridge schema" in result.stderr
    assert run(["migrate"], {}, tmp_path).returncode == 0
    result = run(["check-config"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok database: SQLite at ./var/bridge.db, schema at" in result.stderr
    # --offline touches nothing, so an unreachable database passes.
    offline = run(
        ["check-config", "--offline"], {"BRIDGE_DATABASE_URL": unreachable_postgres()}, tmp_path
    )
    assert offline.returncode == 0, offline.stderr


async def _check_config_against(simulator: AxpSimulator, env: dict[str, str], cwd: Path):  # type: ignore[no-untyped-def]
    server = LoopbackServer()
    async with server.serve(simulator.app, lifespan="off"):
        env = {**env, "BRIDGE_AXP_BASE_URL": server.url}
        clean = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(cwd),
            "BRIDGE_SECRETS_DIR": str(cwd / "no-secrets-here"),
            **env,
        }
        process = await asyncio.create_subprocess_exec(
            str(CONSOLE_SCRIPT),
            "check-config",
            cwd=cwd,
            env=clean,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.parametrize("secret_is_right", [True, False])
async def test_check_config_asks_axp_for_a_token(secret_is_right: bool, tmp_path: Path) -> None:
    client_secret = random_secret()
    simulator = AxpSimulator(
        account_id="ABCDEF",
        client_id="bridge-client",
        client_secret=client_secret,
        app_key="app-key-0123456789abcdef",
    )
    assert sys.executable
    assert run(["migrate"], {}, tmp_path).returncode == 0
    env = {
        "BRIDGE_SANDBOX": "false",
        "BRIDGE_AXP_ACCOUNT_ID": "ABCDEF",
        "BRIDGE_AXP_CLIENT_ID": "bridge-client",
        "BRIDGE_AXP_CLIENT_SECRET": client_secret if secret_is_right else random_secret(),
        "BRIDGE_AXP_APP_KEY": "app-key-0123456789abcdef",
    }
    status, _stdout, stderr = await _check_config_against(simulator, env, tmp_path)
    assert simulator.token_requests == 1
    assert "Traceback" not in stderr
    if secret_is_right:
        assert status == 0, stderr
        assert "ok axp: token issued by" in stderr
    else:
        assert status == 2
        line = next(line for line in stderr.splitlines() if line.startswith("error axp:"))
        assert "BRIDGE_AXP_CLIENT_SECRET" in line
        assert client_secret not in stderr


def test_prod_refuses_example_values_copied_from_the_configmap(tmp_path: Path) -> None:
    env = prod_env(BRIDGE_NEXUS_BASE_URL="https://nexus.example.com")
    result = run(_command(["serve", "--port", "{port}"]), env, tmp_path)
    assert_one_line_fault(result, "BRIDGE_NEXUS_BASE_URL", "example URL")
    assert "Uvicorn running" not in result.stdout + result.stderr


def _set_schema_revision(cwd: Path, revision: str) -> None:
    import sqlite3

    with sqlite3.connect(cwd / "var" / "bridge.db") as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (revision,))


def test_a_database_behind_this_version_says_run_migrate_one_ahead_is_accepted(
    tmp_path: Path,
) -> None:
    from alembic.script import ScriptDirectory

    from channel_bridge.db.migrate import alembic_config

    assert run(["migrate"], {}, tmp_path).returncode == 0
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite:///x.db"))
    head = script.get_current_head()
    older = script.get_revision(head).down_revision
    assert isinstance(older, str)
    _set_schema_revision(tmp_path, older)
    result = run(["check-config"], {}, tmp_path)
    assert result.returncode == 2
    assert f"is at revision {older}, this version needs {head}: run `channel-bridge migrate`" in (
        result.stderr
    )
    # A newer release migrated first (rolling update): this one keeps running on its schema.
    _set_schema_revision(tmp_path, "f0f0f0f0f0f0")
    result = run(["check-config"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok database: SQLite at ./var/bridge.db, schema at f0f0f0f0f0f0" in result.stderr
