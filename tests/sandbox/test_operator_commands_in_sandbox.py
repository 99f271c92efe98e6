"""In sandbox mode the operator commands that call AXP, Nexus and Akixi act on the
simulators the running `channel-bridge serve` mounts: the same state the server relays with.
Every command runs as the real console script against a real served sandbox."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.foundation.test_cli import run
from tests.support.postgres import free_port
from tests.support.served import serving


@pytest.fixture(scope="module")
def served_sandbox(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, str]]]:
    cwd = tmp_path_factory.mktemp("sandbox")
    port = free_port()
    env = {
        "BRIDGE_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        # Admin changes finish on the first poll; no need to wait the default second.
        "BRIDGE_AXP_ADMIN_POLL_INITIAL_INTERVAL_S": "0.05",
    }
    assert run(["migrate"], env, cwd).returncode == 0
    with serving(cwd, port, env):
        yield cwd, env


def ok(args: list[str], served: tuple[Path, dict[str, str]]) -> subprocess.CompletedProcess[str]:
    cwd, env = served
    result = run(args, env, cwd)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def test_axp_subscriptions_list_shows_the_sandbox_subscription(served_sandbox) -> None:
    listed = json.loads(ok(["axp", "subscriptions", "list"], served_sandbox).stdout)
    assert [s["channelProviderId"] for s in listed] == ["sandbox-messaging-provider"]


def test_nexus_provision_sends_the_channels_to_the_simulated_nexus(served_sandbox) -> None:
    result = ok(["nexus", "provision"], served_sandbox)
    assert "Async service provisioned for 1 channel(s) (HTTP 200)" in result.stderr


def test_akixi_sync_repairs_the_simulated_akixi(served_sandbox) -> None:
    ok(["akixi", "sync"], served_sandbox)
    again = ok(["akixi", "sync", "--dry-run"], served_sandbox)
    assert "missing: 0, orphaned: 0, drifted: 0" in again.stdout


def test_axp_numbers_and_elements_work_against_the_simulated_admin_api(served_sandbox) -> None:
    available = ok(
        ["axp", "numbers", "available", "--country", "US", "--type", "LOCAL"], served_sandbox
    )
    assert "+13305550101" in available.stdout
    added = ok(
        [
            "axp",
            "numbers",
            "add",
            "+13305550101",
            "--country",
            "US",
            "--display-name",
            "Front desk",
        ],
        served_sandbox,
    )
    assert "ACTIVE" in added.stdout
    assert "+13305550101" in ok(["axp", "numbers", "list"], served_sandbox).stdout
    created = ok(
        ["axp", "aco", "create", "--name", "Office", "--environment", "Production"], served_sandbox
    )
    assert "SUCCESS" in created.stdout
    assert "Office" in ok(["axp", "elements", "list"], served_sandbox).stdout


@pytest.mark.parametrize(
    "command",
    [
        ["axp", "subscriptions", "list"],
        ["nexus", "provision"],
        ["akixi", "sync"],
        ["axp", "numbers", "list"],
    ],
)
def test_without_a_served_sandbox_the_commands_say_how_to_start_it(
    command: list[str], tmp_path: Path
) -> None:
    env = {"BRIDGE_PUBLIC_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    result = run(command, env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "start it (make run)" in lines[0] and "BRIDGE_PUBLIC_BASE_URL" in lines[0]
