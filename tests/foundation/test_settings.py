"""Settings: prod refuses unusable secrets with one line naming the variable, URLs are
rewritten to async drivers, and Kubernetes-mounted secret files are read."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from channel_bridge.cli import app as cli_app
from channel_bridge.settings import ConfigError, Settings

REQUIRED = ("secret_key", "admin_token", "axp_callback_token")
# AXP and Nexus configured: check-config fails prod without the platforms the bridge relays to.
RELAYING = {
    "BRIDGE_AXP_BASE_URL": "https://axp.test",
    "BRIDGE_AXP_ACCOUNT_ID": "ABCDEF",
    "BRIDGE_AXP_CLIENT_ID": "bridge-client",
    "BRIDGE_AXP_CLIENT_SECRET": secrets.token_urlsafe(36),
    "BRIDGE_AXP_APP_KEY": secrets.token_urlsafe(36),
    "BRIDGE_NEXUS_BASE_URL": "https://nexus.test",
}
OPTIONAL_SECRETS = (
    "axp_client_secret",
    "axp_app_key",
    "nexus_api_key",
    "akixi_password",
    "akixi_auth_password1",
    "akixi_auth_password2",
)


def random_secret() -> str:
    return secrets.token_urlsafe(36)


def prod(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "prod",
        "public_base_url": "https://bridge.test",
        **{name: random_secret() for name in REQUIRED},
    }
    values.update(overrides)
    return Settings(_env_file=None, _secrets_dir=None, **values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_outside_settings(clean_bridge_env, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the repository


def test_a_complete_prod_configuration_is_usable() -> None:
    settings = prod(**{name: random_secret() for name in OPTIONAL_SECRETS})
    assert settings.problems() == []
    settings.ensure_usable()


@pytest.mark.parametrize("name", REQUIRED)
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "is missing"),
        ("change-me-0123456789abcdef0123456789abcdef", "holds a placeholder value"),
        ("dev-0123456789abcdef0123456789abcdef", "holds a placeholder value"),
        ("replace-me-not-real-but-long-0123456789abcdefgh", "holds a placeholder value"),
        ("Zq8-short-but-random", "is too short"),
    ],
)
def test_prod_refuses_an_unusable_required_secret(name: str, value: str, reason: str) -> None:
    variable = f"BRIDGE_{name.upper()}"
    settings = prod(**{name: value})
    problems = settings.problems()
    assert len(problems) == 1 and problems[0].startswith(f"{variable} {reason}")
    with pytest.raises(ConfigError) as raised:
        settings.ensure_usable()
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{variable} {reason}")
    if value:
        assert value not in message


def test_prod_refuses_the_dev_defaults() -> None:
    settings = Settings(
        _env_file=None, _secrets_dir=None, env="prod", public_base_url="https://bridge.test"
    )
    problems = settings.problems()
    for name in REQUIRED:
        assert any(p.startswith(f"BRIDGE_{name.upper()} holds a placeholder") for p in problems)


@pytest.mark.parametrize("name", OPTIONAL_SECRETS)
def test_prod_refuses_a_placeholder_in_an_optional_secret(name: str) -> None:
    assert prod(**{name: None}).problems() == []  # absent is fine (that upstream is unused)
    problems = prod(**{name: f"change-me-{name}"}).problems()
    assert problems == [
        f"BRIDGE_{name.upper()} holds a placeholder value: set a real secret for BRIDGE_ENV=prod"
    ]


def test_prod_refuses_a_placeholder_database_password_sandbox_and_plain_http() -> None:
    assert prod(database_url="postgresql://bridge:change-me-db-password@db/bridge").problems() == [
        "BRIDGE_DATABASE_URL holds a placeholder password: set the real one for BRIDGE_ENV=prod"
    ]
    assert prod(sandbox=True).problems() == [
        "BRIDGE_SANDBOX=true is not allowed when BRIDGE_ENV=prod"
    ]
    assert prod(public_base_url="http://bridge.test").problems() == [
        "BRIDGE_PUBLIC_BASE_URL must be an https:// URL when BRIDGE_ENV=prod"
    ]
    assert prod(sandbox=None).sandbox_mode is False


def test_dev_accepts_its_defaults() -> None:
    settings = Settings(_env_file=None, _secrets_dir=None)
    assert settings.env == "dev" and settings.problems() == []


@pytest.mark.parametrize(
    ("given", "effective"),
    [
        ("postgresql://u:p@db:5432/bridge", "postgresql+asyncpg://u:p@db:5432/bridge"),
        ("postgres://u:p@db/bridge", "postgresql+asyncpg://u:p@db/bridge"),
        ("postgresql+psycopg2://u@db/bridge", "postgresql+asyncpg://u@db/bridge"),
        ("postgresql+asyncpg://u@db/bridge", "postgresql+asyncpg://u@db/bridge"),
        ("sqlite:///./var/x.db", "sqlite+aiosqlite:///./var/x.db"),
        ("sqlite+aiosqlite:///./var/x.db", "sqlite+aiosqlite:///./var/x.db"),
    ],
)
def test_database_urls_are_rewritten_to_async_drivers(
    given: str, effective: str, monkeypatch
) -> None:
    assert Settings(_env_file=None, database_url=given).database_url == effective
    monkeypatch.setenv("BRIDGE_DATABASE_URL", given)
    assert Settings(_env_file=None).database_url == effective


def test_secret_files_in_the_kubernetes_layout_are_read(tmp_path: Path) -> None:
    # A mounted Secret: files are symlinks through ..data to a timestamped folder.
    versioned = tmp_path / "secrets" / "..2026_11_24_01_00_00.000"
    versioned.mkdir(parents=True)
    value = random_secret()
    (versioned / "BRIDGE_SECRET_KEY").write_text(value + "\n")
    (tmp_path / "secrets" / "..data").symlink_to(versioned.name)
    (tmp_path / "secrets" / "BRIDGE_SECRET_KEY").symlink_to("..data/BRIDGE_SECRET_KEY")
    settings = Settings(_env_file=None, _secrets_dir=tmp_path / "secrets")
    assert isinstance(settings.secret_key, SecretStr)
    assert settings.secret_key.get_secret_value() == value
    assert value not in repr(settings) and value not in str(settings.masked())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "is missing"),
        ("dev-secret-key-change-me", "holds a placeholder value"),
        ("Zq8-short-but-random", "is too short"),
    ],
)
def test_check_config_names_the_variable_on_one_line(value: str, reason: str, monkeypatch) -> None:
    for name, secret in {
        "BRIDGE_ENV": "prod",
        "BRIDGE_PUBLIC_BASE_URL": "https://bridge.test",
        **{f"BRIDGE_{n.upper()}": random_secret() for n in REQUIRED},
        **RELAYING,
        "BRIDGE_SECRET_KEY": value,
    }.items():
        monkeypatch.setenv(name, secret)
    result = CliRunner().invoke(cli_app, ["check-config", "--offline"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"configuration error: BRIDGE_SECRET_KEY {reason}")
    if value:
        assert value not in result.output


def test_random_secrets_are_never_taken_for_placeholders() -> None:
    """A real secret must never be refused: 2,000 random ones all pass the placeholder check."""
    import secrets as random_secrets

    from channel_bridge.settings import _is_placeholder

    assert not any(_is_placeholder(random_secrets.token_urlsafe(36)) for _ in range(2000))
    assert _is_placeholder("change-me-secret-key-00000000000000000000")
    assert _is_placeholder("dev-secret-key-change-me") and _is_placeholder("xxxxxxxx")


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("akixi_description_format", "{name}", "must contain {key}"),
        ("akixi_description_format", "{key} {key}", "only once"),
        ("akixi_description_format", "{name} [{key}] {account}", "unknown placeholder"),
        ("akixi_description_format", "{name [{key}]", "not a valid template"),
        ("akixi_password_digest_input", "{nonce}", "must contain {password}"),
        ("akixi_password_digest_input", "{nonce}{password}{salt}", "unknown placeholder"),
    ],
)
def test_akixi_templates_are_checked_at_start(name: str, value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Settings(_env_file=None, _secrets_dir=None, **{name: value})  # type: ignore[arg-type]


def test_akixi_comms_enabled_waits_for_the_livechat_credentials() -> None:
    def comms(**values: object) -> bool:
        settings = Settings(_env_file=None, _secrets_dir=None, **values)  # type: ignore[arg-type]
        return settings.akixi_comms_enabled_value

    assert comms() is False
    assert comms(akixi_auth_user_id1="u") is False
    assert comms(akixi_auth_user_id1="u", akixi_auth_password1="p") is True
    assert comms(akixi_auth_user_id1="u", akixi_auth_password1="p", akixi_comms_enabled=False) is (
        False
    )
    assert comms(akixi_comms_enabled=True) is True
