"""BRIDGE_SECRET_KEY as a list (MultiFernet) and `channel-bridge secrets rotate`: stored
secrets written under the old key stay readable while both are listed, the rotation rewrites
them under the new key, and after it the old key can go."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from channel_bridge.cli import app
from channel_bridge.db.base import utcnow
from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.db.migrate import upgrade
from channel_bridge.db.models import Channel, Integration
from channel_bridge.mappings.secret_rotation import rotate_stored_secrets
from channel_bridge.security import SecretBox, SecretBoxError
from channel_bridge.settings import Settings

OLD, NEW, OTHER = (secrets.token_urlsafe(36) for _ in range(3))
WEBHOOK_SECRETS = ["webhook-secret-new-5d1c9b0a", "webhook-secret-old-2e3f4a5b"]
API_SECRET = "api-secret-7a2f0e1d3c4b"


def box(*keys: str) -> SecretBox:
    return SecretBox(SecretStr(json.dumps(list(keys)) if len(keys) > 1 else keys[0]))


async def seed(sessionmaker, channels: dict[str, SecretBox]) -> None:
    async with sessionmaker() as session, session.begin():
        session.add(
            Integration(
                integration_id="rotation-integration",
                name="r",
                account_id="ACC",
                channel_provider_id="p",
                status="active",
                source="admin",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        await session.flush()
        for nexus_channel_id, writer in channels.items():
            session.add(
                Channel(
                    nexus_channel_id=nexus_channel_id, axp_account_id="ACC",
                    axp_channel_provider_id="p", axp_integration_id="rotation-integration",
                    webhook_secrets_encrypted=writer.encrypt_list(WEBHOOK_SECRETS),
                    api_secret_encrypted=writer.encrypt(API_SECRET),
                    created_at=utcnow(), updated_at=utcnow(),
                )
            )  # fmt: skip


async def stored(sessionmaker) -> dict[str, tuple[str | None, str | None]]:
    async with sessionmaker() as session:
        rows = (await session.scalars(select(Channel).order_by(Channel.nexus_channel_id))).all()
        return {
            r.nexus_channel_id: (r.webhook_secrets_encrypted, r.api_secret_encrypted) for r in rows
        }


def readable_by(reader: SecretBox, tokens: tuple[str | None, str | None]) -> bool:
    webhook, api = tokens
    assert webhook and api
    try:
        values = [s.get_secret_value() for s in reader.decrypt_list(webhook)]
        return values == WEBHOOK_SECRETS and reader.decrypt(api).get_secret_value() == API_SECRET
    except SecretBoxError:
        return False


async def test_rotation_rewrites_every_secret_under_the_first_key(sessionmaker) -> None:
    await seed(sessionmaker, {"+15550000001": box(OLD), "+15550000002": box(OLD)})
    both = box(NEW, OLD)
    before = await stored(sessionmaker)
    # While both keys are listed, secrets written under the old one are read as they are.
    assert all(readable_by(both, tokens) for tokens in before.values())
    assert not any(readable_by(box(NEW), tokens) for tokens in before.values())

    report = await rotate_stored_secrets(sessionmaker, both)
    assert (report.channels, report.secrets, report.unreadable) == (2, 4, [])
    after = await stored(sessionmaker)
    for channel, tokens in after.items():
        assert tokens != before[channel]
        assert readable_by(box(NEW), tokens)  # the old key can now be removed
        assert not readable_by(box(OLD), tokens)


async def test_nothing_changes_when_a_secret_is_unreadable_with_every_key(sessionmaker) -> None:
    await seed(sessionmaker, {"+15550000001": box(OLD), "+15550000002": box(OTHER)})
    before = await stored(sessionmaker)
    report = await rotate_stored_secrets(sessionmaker, box(NEW, OLD))
    assert report.unreadable == ["+15550000002"] and report.channels == 0
    assert await stored(sessionmaker) == before


def test_the_cli_command_rotates_and_exits_non_zero_on_an_unreadable_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'rotate.db'}"
    upgrade(url)
    engine = create_engine(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    sessionmaker = create_sessionmaker(engine)
    asyncio.run(seed(sessionmaker, {"+15550000001": box(OLD)}))
    env = {"BRIDGE_DATABASE_URL": url, "BRIDGE_ENV": "dev", "BRIDGE_LOG_FORMAT": "console"}
    runner = CliRunner()

    result = runner.invoke(
        app, ["secrets", "rotate"], env={**env, "BRIDGE_SECRET_KEY": json.dumps([NEW, OLD])}
    )
    assert result.exit_code == 0, result.output
    assert "re-encrypted 2 secrets of 1 channels with the first of 2 keys" in result.output
    assert NEW not in result.output and OLD not in result.output

    async def check() -> None:
        [tokens] = (await stored(sessionmaker)).values()
        assert readable_by(box(NEW), tokens) and not readable_by(box(OLD), tokens)
        await engine.dispose()

    asyncio.run(check())

    # The new key alone no longer has the OTHER key's secrets to read: refused, exit 1.
    asyncio.run(seed_more(url))
    result = runner.invoke(app, ["secrets", "rotate"], env={**env, "BRIDGE_SECRET_KEY": NEW})
    assert result.exit_code == 1
    assert "nothing changed" in result.output and "+15550000009" in result.output


async def seed_more(url: str) -> None:
    engine = create_engine(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            session.add(
                Channel(
                    nexus_channel_id="+15550000009", axp_account_id="ACC",
                    axp_channel_provider_id="p", axp_integration_id="rotation-integration",
                    api_secret_encrypted=box(OTHER).encrypt(API_SECRET),
                    created_at=utcnow(), updated_at=utcnow(),
                )
            )  # fmt: skip
    finally:
        await engine.dispose()


def test_a_malformed_key_list_is_refused_as_configuration() -> None:
    with pytest.raises(ValueError, match="BRIDGE_SECRET_KEY"):
        Settings(_env_file=None, secret_key='["ok-key", ""]')  # type: ignore[call-arg]
    prod = Settings(  # type: ignore[call-arg]
        _env_file=None,
        env="prod",
        public_base_url="https://bridge.test",
        admin_token=secrets.token_urlsafe(36),
        axp_callback_token=secrets.token_urlsafe(36),
        secret_key=json.dumps([NEW, "change-me-0123456789abcdef0123456789"]),
    )
    assert prod.problems() == [
        "BRIDGE_SECRET_KEY (key 2 of 2) holds a placeholder value: set a real secret "
        "for BRIDGE_ENV=prod"
    ]
    # Each listed key is scrubbed from logs on its own, not only the JSON list.
    assert {NEW} <= set(prod.secret_values())
