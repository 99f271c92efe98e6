"""`channel-bridge channels|integrations ...` against a migrated SQLite file database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from channel_bridge.bridge.integrations import IntegrationDeliveries
from channel_bridge.cli import app
from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.db.migrate import upgrade
from channel_bridge.db.models import Channel, Delivery, InboxEvent, Integration
from channel_bridge.mappings.service import IntegrationService
from channel_bridge.platforms.axp.integration_callback import callback_dedupe_key
from channel_bridge.relay.inbox import Inbox
from channel_bridge.security import SecretBox
from tests.conftest import make_settings
from tests.mappings.conftest import (
    ACCOUNT_ID,
    API_SECRET,
    CHANNEL_PROVIDER_ID,
    INTEGRATION_ID,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_OLD,
)

SECRET_KEY = "cli-test-secret-key-1f2e3d4c5b6a7980"


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    return url


@pytest.fixture
def cli(database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)  # no stray .env
    runner = CliRunner()
    env = {
        "BRIDGE_DATABASE_URL": database,
        "BRIDGE_ENV": "dev",
        "BRIDGE_SECRET_KEY": SECRET_KEY,
        "BRIDGE_LOG_FORMAT": "console",
        "COLUMNS": "240",
    }

    def invoke(*args: str, input: str | None = None) -> Any:
        return runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def rows(database: str, model: Any) -> list[Any]:
    async def read() -> list[Any]:
        engine = create_engine(make_settings(database))
        try:
            async with create_sessionmaker(engine)() as session:
                return list((await session.scalars(select(model))).all())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def assert_no_secret(output: str) -> None:
    for value in (WEBHOOK_SECRET, WEBHOOK_SECRET_OLD, API_SECRET, SECRET_KEY):
        assert value not in output


def test_integration_and_channel_lifecycle(cli, database) -> None:
    added = cli(
        "integrations",
        "add",
        INTEGRATION_ID,
        "--name",
        "SMS support",
        "--account",
        ACCOUNT_ID,
        "--channel-provider",
        CHANNEL_PROVIDER_ID,
    )
    assert added.exit_code == 0, added.output
    assert "2 mirror deliveries queued" in added.output
    [integration] = rows(database, Integration)
    assert (integration.name, integration.source, integration.status) == (
        "SMS support",
        "cli",
        "active",
    )
    assert sorted(d.destination for d in rows(database, Delivery)) == [
        "akixi.upsert",
        "axp.subscription.ensure",
    ]

    outputs = []
    result = cli(
        "channels",
        "add",
        "+15559870000",
        "--integration",
        INTEGRATION_ID,
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--webhook-secret",
        WEBHOOK_SECRET_OLD,
        "--api-secret",
        API_SECRET,
    )
    assert result.exit_code == 0, result.output
    outputs.append(result.output)
    [channel] = rows(database, Channel)
    assert (
        channel.axp_channel_provider_id == CHANNEL_PROVIDER_ID
        and channel.axp_account_id == ACCOUNT_ID
    )
    box = SecretBox(make_settings(database, secret_key=SECRET_KEY).secret_key)
    assert [s.get_secret_value() for s in box.decrypt_list(channel.webhook_secrets_encrypted)] == [
        WEBHOOK_SECRET,
        WEBHOOK_SECRET_OLD,
    ]
    assert box.decrypt(channel.api_secret_encrypted).get_secret_value() == API_SECRET

    listed = cli("channels", "list")
    outputs.append(listed.output)
    assert (
        listed.exit_code == 0
        and "+15559870000" in listed.output
        and "webhook: 2 set" in listed.output
    )
    shown = cli("channels", "show", "+15559870000")
    outputs.append(shown.output)
    assert shown.exit_code == 0 and "has_api_secret" in shown.output and "True" in shown.output

    updated = cli("channels", "update", "+15559870000", "--identifier-key", "mobile", "--disable")
    outputs.append(updated.output)
    assert updated.exit_code == 0, updated.output
    [channel] = rows(database, Channel)
    assert channel.customer_identifier_key == "mobile" and channel.enabled is False
    assert channel.disabled_reason.startswith("disabled via CLI at ")

    enabled = cli("channels", "update", "+15559870000", "--enable")
    assert enabled.exit_code == 0 and rows(database, Channel)[0].enabled is True
    disabled = cli("channels", "disable", "+15559870000", "--reason", "maintenance window")
    assert disabled.exit_code == 0 and "maintenance window" in disabled.output
    outputs.append(cli("integrations", "show", INTEGRATION_ID).output)
    outputs.append(cli("integrations", "list").output)
    for output in outputs:
        assert_no_secret(output)

    removed = cli("integrations", "remove", INTEGRATION_ID, "--yes")
    assert removed.exit_code == 0, removed.output
    # Already disabled by hand: its reason is kept.
    assert "channel +15559870000 disabled" not in removed.output
    assert rows(database, Channel)[0].disabled_reason == "maintenance window"
    [integration] = rows(database, Integration)
    assert integration.status == "deleted"
    assert cli("integrations", "list").output.count(INTEGRATION_ID) == 0
    assert INTEGRATION_ID in cli("integrations", "list", "--all").output

    gone = cli("channels", "remove", "+15559870000", "--yes")
    assert gone.exit_code == 0 and rows(database, Channel) == []


def test_remove_deletes_the_enabled_channels(cli, database) -> None:
    cli(
        "integrations",
        "add",
        INTEGRATION_ID,
        "--account",
        ACCOUNT_ID,
        "--channel-provider",
        CHANNEL_PROVIDER_ID,
    )
    cli("channels", "add", "+15559870000", "--integration", INTEGRATION_ID)
    removed = cli("integrations", "remove", INTEGRATION_ID, "--yes")
    assert "channel +15559870000 disabled" in removed.output
    [channel] = rows(database, Channel)
    assert channel.enabled is False
    assert channel.disabled_reason.startswith(f"integration {INTEGRATION_ID} deleted via CLI at ")


def test_secrets_from_hidden_prompts(cli, database) -> None:
    cli(
        "integrations",
        "add",
        INTEGRATION_ID,
        "--account",
        ACCOUNT_ID,
        "--channel-provider",
        CHANNEL_PROVIDER_ID,
    )
    result = cli(
        "channels",
        "add",
        "+15559870000",
        "--integration",
        INTEGRATION_ID,
        "--prompt-secrets",
        input=f"{WEBHOOK_SECRET}\n{API_SECRET}\n",
    )
    assert result.exit_code == 0, result.output
    assert_no_secret(result.output)
    [channel] = rows(database, Channel)
    box = SecretBox(make_settings(database, secret_key=SECRET_KEY).secret_key)
    assert box.decrypt(channel.api_secret_encrypted).get_secret_value() == API_SECRET
    assert len(box.decrypt_list(channel.webhook_secrets_encrypted)) == 1


def test_errors_exit_non_zero_with_the_field(cli, database) -> None:
    invalid = cli(
        "channels", "add", "+0123", "--integration", INTEGRATION_ID, "--api-secret", API_SECRET
    )
    assert invalid.exit_code == 1
    assert "nexus_channel_id" in invalid.output
    assert_no_secret(invalid.output)

    unknown = cli(
        "channels",
        "add",
        "+15559870000",
        "--integration",
        "no-such-integration",
        "--account",
        ACCOUNT_ID,
        "--channel-provider",
        CHANNEL_PROVIDER_ID,
    )
    assert unknown.exit_code == 1 and "axp_integration_id" in unknown.output

    cli(
        "integrations",
        "add",
        INTEGRATION_ID,
        "--account",
        ACCOUNT_ID,
        "--channel-provider",
        CHANNEL_PROVIDER_ID,
    )
    duplicate = cli("integrations", "add", INTEGRATION_ID)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    cli("channels", "add", "+15559870000", "--integration", INTEGRATION_ID)
    again = cli("channels", "add", "+15559870000", "--integration", INTEGRATION_ID)
    assert again.exit_code == 1 and "already exists" in again.output
    missing = cli("channels", "show", "+15550000000")
    assert missing.exit_code == 1 and "No channel mapping" in missing.output
    assert cli("integrations", "remove", "no-such-integration", "--yes").exit_code == 1
    assert len(rows(database, Channel)) == 1


def _hold(database: str, body: dict[str, Any]) -> int:
    """A callback held for review, stored as the lifecycle route stores one."""

    async def store() -> int:
        engine = create_engine(make_settings(database))
        try:
            sessionmaker = create_sessionmaker(engine)
            service = IntegrationService(
                inbox=Inbox(sessionmaker),
                sessionmaker=sessionmaker,
                planner=IntegrationDeliveries(),
            )
            held = await service.hold_for_review(
                external_id=callback_dedupe_key("POST", body),
                method="POST",
                body=body,
                raw_body=json.dumps(body),
                problems=[{"field": "body.action", "message": "missing"}],
                hints={"integration_id": INTEGRATION_ID, "name": "SMS support"},
            )
            return held.inbox_event_id
        finally:
            await engine.dispose()

    return asyncio.run(store())


def test_held_callbacks_are_listed_resolved_and_dismissed(cli, database) -> None:
    assert "no integration callbacks need review" in cli("integrations", "pending").output
    first = _hold(database, {"integrationId": INTEGRATION_ID, "name": "SMS support"})
    second = _hold(database, {"ping": True})
    listed = cli("integrations", "pending")
    assert listed.exit_code == 0, listed.output
    assert f"integration_id={INTEGRATION_ID}" in listed.output and "body.action" in listed.output
    assert str(first) in listed.output and '{"ping": true}' in listed.output

    bad = cli("integrations", "resolve", str(first), "--action", "archived")
    assert bad.exit_code == 1 and "action" in bad.output
    resolved = cli("integrations", "resolve", str(first), "--action", "created")
    assert resolved.exit_code == 0, resolved.output
    assert f"integration {INTEGRATION_ID} created" in resolved.output
    [integration] = rows(database, Integration)
    assert (integration.name, integration.source) == ("SMS support", "cli")
    again = cli("integrations", "resolve", str(first), "--action", "created")
    assert again.exit_code == 1 and "already handled" in again.output

    dismissed = cli("integrations", "dismiss", str(second), "--reason", "a ping")
    assert dismissed.exit_code == 0 and "dismissed via CLI" in dismissed.output
    assert "no integration callbacks need review" in cli("integrations", "pending").output
    statuses = sorted(
        event.status for event in rows(database, InboxEvent) if event.id in (first, second)
    )
    assert statuses == ["handled", "ignored"]
