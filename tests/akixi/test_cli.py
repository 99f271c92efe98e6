"""`channel-bridge akixi sync|info` through typer's CliRunner, on a real DB and the simulator."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from typer.testing import CliRunner

from channel_bridge.cli import app as cli_app
from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.db.models import Integration
from channel_bridge.platforms.akixi import cli as akixi_cli
from channel_bridge.platforms.akixi.client import AkixiClient, InvokeIdCounter
from channel_bridge.sandbox.akixi import (
    SANDBOX_PASSWORD,
    SANDBOX_USER,
    SEED_PARTITION_GUID,
    AkixiSimulator,
)
from channel_bridge.settings import Settings
from tests.akixi.conftest import AKIXI_URL, fixture_bytes, simulator_http
from tests.conftest import (
    TEST_ADMIN_TOKEN,
    TEST_CALLBACK_TOKEN,
    TEST_SECRET_KEY,
    make_settings,
    truncate_all,
)

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


def _use_client(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    open_http,
    *,
    invoke_ids: int = 0,
    **env: str,
) -> None:
    """The CLI's Akixi client on `open_http()`, and the environment the CLI reads."""

    def factory(settings: Settings):
        @asynccontextmanager
        async def open_client() -> AsyncIterator[AkixiClient]:
            async with open_http() as http:
                yield AkixiClient(http, settings, invoke_ids=InvokeIdCounter(invoke_ids))

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
        # A real upstream URL: the dev placeholders of these would be refused.
        "BRIDGE_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
        "BRIDGE_AXP_CALLBACK_TOKEN": TEST_CALLBACK_TOKEN,
        "BRIDGE_SECRET_KEY": TEST_SECRET_KEY,
        **env,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def simulator(monkeypatch: pytest.MonkeyPatch, database_url: str) -> AkixiSimulator:
    simulator = AkixiSimulator(user=SANDBOX_USER, password=SANDBOX_PASSWORD)
    _use_client(monkeypatch, database_url, lambda: simulator_http(simulator))
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
                ("int-legacy", "Legacy", "active"),
                ("int-deleted", "Old", "deleted"),
            ],
        )
    )
    # UniqueIDs assigned by Akixi; ours are recognised by the Description tag.
    simulator.add_entry("ak-ok", description="Sales [axp-int-ok]", comms_enabled=False)
    simulator.add_entry("ak-ok-2", description="Sales [axp-int-ok]", comms_enabled=False)
    simulator.add_entry("ak-drift", description="Billing (old) [axp-int-drift]")
    simulator.add_entry("ak-deleted", description="Old [axp-int-deleted]")
    simulator.add_entry("ak-stranger", description="Nobody's [axp-stranger]")
    # Written before the Description tag, with our own UniqueID: found by its prefix.
    simulator.add_entry("axp-int-legacy", description="Legacy", comms_enabled=False)
    simulator.add_entry("LiveChat5918734", description="Not ours")  # no tag: never touched
    return simulator


def test_sync_dry_run_reports_missing_orphaned_and_drifted(drifted_world: AkixiSimulator) -> None:
    before = {uid: dict(entry) for uid, entry in drifted_world.entries.items()}
    result = runner.invoke(cli_app, ["akixi", "sync", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    missing = _row(out, "int-missing")
    assert "missing" in missing and " - " in missing  # Akixi will assign its UniqueID
    stranger = _row(out, "ak-stranger")
    assert "orphaned" in stranger and "no such integration" in stranger
    deleted = _row(out, "ak-deleted")
    assert "orphaned" in deleted and "integration is deleted" in deleted
    duplicate = _row(out, "ak-ok-2")
    assert "orphaned" in duplicate and "second entry" in duplicate
    drift = _row(out, "ak-drift")
    assert "drifted" in drift and "CommsEnabled True != False" in drift
    legacy = _row(out, "axp-int-legacy")
    assert "drifted" in legacy and "Description 'Legacy'" in legacy
    assert " ak-ok " not in out and "LiveChat5918734" not in out
    assert "missing: 1, orphaned: 3, drifted: 2" in out
    # A dry run only reads.
    assert set(drifted_world.operations()) == {"OmnichannelIntList"}
    assert drifted_world.entries == before


def test_sync_repairs_with_the_mirror_calls(drifted_world: AkixiSimulator) -> None:
    result = runner.invoke(cli_app, ["akixi", "sync"])
    assert result.exit_code == 0, result.output
    entries = drifted_world.entries
    assert {"ak-stranger", "ak-deleted", "ak-ok-2"}.isdisjoint(entries)
    assert entries["LiveChat5918734"]["Description"] == "Not ours"
    assert entries["ak-drift"]["Description"] == "Billing [axp-int-drift]"
    assert entries["ak-drift"]["APICommunicationSettings"]["CommsEnabled"] == "False"
    assert entries["axp-int-legacy"]["Description"] == "Legacy [axp-int-legacy]"
    added = [e for e in entries.values() if e["Description"] == "Support [axp-int-missing]"]
    assert len(added) == 1
    # Orphans were disabled before being deleted, as the delete delivery does.
    ops = [
        (call.operation, call.payload.get("UniqueID"))
        for call in drifted_world.log
        if call.operation not in ("CreateSession", "Authenticate", "OmnichannelIntList")
    ]
    for orphan in ("ak-stranger", "ak-deleted", "ak-ok-2"):
        assert ops.index(("OmnichannelIntChange", orphan)) < ops.index(
            ("OmnichannelIntDelete", orphan)
        )
    assert "repaired" in _row(result.stdout, "int-missing")

    again = runner.invoke(cli_app, ["akixi", "sync", "--dry-run"])
    assert again.exit_code == 0 and "in sync" in again.stdout, again.stdout


SEED_INTEGRATION = "e94e278d-72e7-48cc-80fc-dba9f8dd1c36"


def _seed_akixi(list_fixture: str, requests: list[bytes]) -> httpx.MockTransport:
    """An Akixi that answers List with a seed 001 fixture, byte for byte."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = request.content
        requests.append(body)
        operation = ET.fromstring(body).get("Operation")
        invoke_id = ET.fromstring(body).findtext("InvokeID")
        if operation == "OmnichannelIntList":
            return httpx.Response(200, content=fixture_bytes(list_fixture))
        success = (
            '<Success><Property Name="SessionID">EFA4902A7F61D03E42BF3222B0A246BF</Property>'
            '<Property Name="Nonce">n0nce</Property></Success>'
            if operation == "CreateSession"
            else ""
        )
        return httpx.Response(
            200,
            content=f'<Response Result="Success"><InvokeID>{invoke_id}</InvokeID>{success}'
            "</Response>".encode(),
        )

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(
    ("list_fixture", "expected"),
    [
        # The seed's own answer: two entries, neither tagged as ours, no UniqueIDs.
        ("list_response.xml", "missing: 1, orphaned: 0, drifted: 0"),
        # The same answer with the Description the bridge writes: found, in sync.
        ("list_response_tagged.xml", "in sync"),
    ],
)
def test_sync_dry_run_on_the_seed_list_answer(
    monkeypatch: pytest.MonkeyPatch, database_url: str, list_fixture: str, expected: str
) -> None:
    asyncio.run(_seed_integrations(database_url, [(SEED_INTEGRATION, "Test LiveChat", "active")]))
    requests: list[bytes] = []
    _use_client(
        monkeypatch,
        database_url,
        lambda: httpx.AsyncClient(transport=_seed_akixi(list_fixture, requests)),
        # CreateSession 00034, Authenticate 00035, List 00036: the seed's InvokeID.
        invoke_ids=34,
        # The seed's LiveChat credentials: its entry's CommsEnabled True is then expected.
        BRIDGE_AKIXI_AUTH_USER_ID1="2ty3m6f2a05297e5bbnb7b327n1afbd6",
        BRIDGE_AKIXI_AUTH_PASSWORD1="C4gRIuo7ZTdpW/2LejGDLfpt0N+e2YhHBa0PehmQV8s=",
    )
    result = runner.invoke(cli_app, ["akixi", "sync", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert expected in result.stdout
    assert "Test Email" not in result.stdout  # someone else's entry is never reported
    listed = ET.fromstring(requests[-1])
    fields = listed.find("./OperationPayload/Property[@Name='OmniChannelIntFields']")
    assert fields is not None and "UniqueID" in (fields.text or "").split(",")


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
