"""`channel-bridge akixi sync|info` through typer's CliRunner, on a real DB and the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from typer.testing import CliRunner

from channel_bridge.cli import app as cli_app
from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.db.models import Integration
from channel_bridge.platforms.akixi import cli as akixi_cli
from channel_bridge.platforms.akixi.client import AkixiClient
from channel_bridge.sandbox.akixi import (
    SANDBOX_PASSWORD,
    SANDBOX_USER,
    SEED_PARTITION_GUID,
    AkixiSimulator,
)
from channel_bridge.settings import Settings
from tests.akixi.conftest import AKIXI_URL, simulator_http
from tests.conftest import make_settings, truncate_all

runner = CliRunner()


async def _seed_integrations(database_url: str, rows: list[tuple[str, str, str]]) -> None:
    engine = create_engine(make_settings(database_url))
    try:
        await truncate_all(engine)
        async with create_sessionmaker(engine)() as session, session.begin():
            for integration_id, name, status in rows:
                session.add(
                    Integration(
                        integration_id=integration_id,
                        name=name,
                        status=status,
                        account_id="ACC1",
                        channel_provider_id="cp-1",
                    )
                )
    finally:
        await engine.dispose()


@pytest.fixture
def simulator(monkeypatch: pytest.MonkeyPatch, database_url: str) -> AkixiSimulator:
    simulator = AkixiSimulator(user=SANDBOX_USER, password=SANDBOX_PASSWORD)

    def factory(settings: Settings):
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def open_client() -> AsyncIterator[AkixiClient]:
            async with simulator_http(simulator) as http:
                yield AkixiClient(http, settings)

        return open_client()

    monkeypatch.setattr(akixi_cli, "client_factory", factory)
    for name, value in {
        "BRIDGE_ENV": "dev",
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_SANDBOX": "false",
        "BRIDGE_AKIXI_URL": AKIXI_URL,
        "BRIDGE_AKIXI_USER": SANDBOX_USER,
        "BRIDGE_AKIXI_PASSWORD": SANDBOX_PASSWORD,
        "BRIDGE_AKIXI_PARTITION_GUID": SEED_PARTITION_GUID,
    }.items():
        monkeypatch.setenv(name, value)
    return simulator


def _row(output: str, unique_id: str) -> str:
    lines = [line for line in output.splitlines() if f" {unique_id} " in line]
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture
def drifted_world(simulator: AkixiSimulator, database_url: str) -> AkixiSimulator:
    asyncio.run(
        _seed_integrations(
            database_url,
            [
                ("int-ok", "Sales", "active"),
                ("int-missing", "Support", "active"),
                ("int-drift", "Billing", "active"),
                ("int-deleted", "Old", "deleted"),
            ],
        )
    )
    simulator.add_entry("axp-int-ok", description="Sales")
    simulator.add_entry("axp-int-drift", description="Billing (old)", comms_enabled=False)
    simulator.add_entry("axp-int-deleted", description="Old")
    simulator.add_entry("axp-stranger", description="Nobody's")
    simulator.add_entry("LiveChat5918734", description="Not ours")  # no prefix: never touched
    return simulator


def test_sync_dry_run_reports_missing_orphaned_and_drifted(drifted_world: AkixiSimulator) -> None:
    before = {uid: dict(entry) for uid, entry in drifted_world.entries.items()}
    result = runner.invoke(cli_app, ["akixi", "sync", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    missing = _row(out, "axp-int-missing")
    assert "missing" in missing and "int-missing" in missing
    stranger = _row(out, "axp-stranger")
    assert "orphaned" in stranger and "no such integration" in stranger
    deleted = _row(out, "axp-int-deleted")
    assert "orphaned" in deleted and "integration is deleted" in deleted
    drift = _row(out, "axp-int-drift")
    assert "drifted" in drift and "CommsEnabled" in drift
    assert " axp-int-ok " not in out and "LiveChat5918734" not in out
    assert "missing: 1, orphaned: 2, drifted: 1" in out
    # A dry run only reads.
    assert set(drifted_world.operations()) == {"OmnichannelIntList"}
    assert drifted_world.entries == before


def test_sync_repairs_with_the_mirror_calls(drifted_world: AkixiSimulator) -> None:
    result = runner.invoke(cli_app, ["akixi", "sync"])
    assert result.exit_code == 0, result.output
    entries = drifted_world.entries
    assert sorted(entries) == ["LiveChat5918734", "axp-int-drift", "axp-int-missing", "axp-int-ok"]
    assert entries["axp-int-missing"]["Description"] == "Support"
    assert entries["axp-int-drift"]["Description"] == "Billing"
    assert entries["axp-int-drift"]["APICommunicationSettings"]["CommsEnabled"] == "True"
    # Orphans were disabled before being deleted, as the delete delivery does.
    ops = [
        (call.operation, call.payload.get("UniqueID"))
        for call in drifted_world.log
        if call.operation not in ("CreateSession", "Authenticate", "OmnichannelIntList")
    ]
    for orphan in ("axp-stranger", "axp-int-deleted"):
        assert ops.index(("OmnichannelIntChange", orphan)) < ops.index(
            ("OmnichannelIntDelete", orphan)
        )
    assert "repaired" in _row(result.stdout, "axp-int-missing")

    again = runner.invoke(cli_app, ["akixi", "sync", "--dry-run"])
    assert again.exit_code == 0 and "in sync" in again.stdout


def test_info_shows_one_entry_and_not_found_exits_1(
    simulator: AkixiSimulator, database_url: str
) -> None:
    simulator.add_entry("axp-int-ok", description="Sales")
    simulator.entries["axp-int-ok"]["APICommunicationSettings"]["AuthPassword1"] = "hunter2-secret"
    shown = runner.invoke(cli_app, ["akixi", "info", "axp-int-ok"])
    assert shown.exit_code == 0, shown.output
    assert "Sales" in shown.stdout and "APICommunicationSettings.CommsEnabled" in shown.stdout
    assert "hunter2-secret" not in shown.stdout
    as_json = runner.invoke(cli_app, ["akixi", "info", "axp-int-ok", "--json"])
    assert '"Description": "Sales"' in as_json.stdout and "hunter2-secret" not in as_json.stdout
    missing = runner.invoke(cli_app, ["akixi", "info", "axp-nope"])
    assert missing.exit_code == 1 and "no Akixi entry" in missing.output


def test_sync_without_akixi_url_is_a_config_error(
    simulator: AkixiSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRIDGE_AKIXI_URL")
    result = runner.invoke(cli_app, ["akixi", "sync", "--dry-run"])
    assert result.exit_code == 2 and "BRIDGE_AKIXI_URL" in result.output


def test_sync_with_akixi_down_exits_1(drifted_world: AkixiSimulator) -> None:
    drifted_world.down = True
    result = runner.invoke(cli_app, ["akixi", "sync", "--dry-run"])
    assert result.exit_code == 1 and "akixi error" in result.output
