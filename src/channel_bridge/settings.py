"""All configuration, read from BRIDGE_* environment variables, `.env` and a secrets dir.

Every tunable carries the reason for its default. Secrets are `SecretStr`: they print as
`**********` and are unwrapped only where they are used.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values shipped as dev defaults or in .env.example; refused outside dev.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "example", "dev-", "xxx", "todo")

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./var/bridge.db"

AXP_EVENT_TYPES = (
    "MESSAGES",
    "PARTICIPANT_ADDED",
    "PARTICIPANT_DISCONNECTED",
    "ENGAGEMENT_CREATED",
    "ENGAGEMENT_ERROR",
    "TYPING",
)


class ConfigError(Exception):
    """Settings that cannot be used; the message is one line naming the variable."""


def _secrets_dir() -> str | None:
    # Kubernetes mounts secrets as files; a missing directory must not break a laptop run.
    path = os.environ.get("BRIDGE_SECRETS_DIR", "/run/secrets/channel-bridge")
    return path if Path(path).is_dir() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        secrets_dir=_secrets_dir(),
    )

    # --- core -------------------------------------------------------------------------
    env: Literal["dev", "prod"] = "dev"
    database_url: str = DEFAULT_SQLITE_URL
    public_base_url: str = "http://localhost:8080"
    admin_token: SecretStr = SecretStr("dev-admin-token")
    secret_key: SecretStr | None = SecretStr("dev-secret-key-change-me")
    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None  # None: json in prod, console in dev
    # AXP and Nexus payloads are small JSON documents; media travels by URL, never inline.
    max_body_bytes: int = 1024 * 1024
    # Upper bounds for the pool: the relay worker and the webhook routes share it.
    db_pool_size: int = 20
    db_max_overflow: int = 20
    db_connect_timeout_s: float = 5.0
    # Outbound HTTP: AXP answers a send in well under a second; 10 s leaves room for media.
    http_timeout_s: float = 10.0
    http_connect_timeout_s: float = 5.0
    http_max_connections: int = 100
    # None: sandbox when env=dev and no AXP/Nexus base URL is configured. Never in prod.
    sandbox: bool | None = None

    # --- relay ------------------------------------------------------------------------
    worker_enabled: bool = True
    # Concurrent deliveries in flight per process; upstream calls are I/O bound.
    worker_concurrency: int = 16
    # A lease longer than the slowest call (timeout + media) so a live worker keeps its rows.
    worker_lease_s: float = 60.0
    # Fallback only: accept() wakes the worker in-process and LISTEN/NOTIFY across processes.
    worker_poll_interval_s: float = 1.0
    worker_claim_batch: int = 64
    # Group commit: gather concurrent accepts into one transaction (≈ halves ack cost).
    inbox_group_commit_window_ms: float = 1.5
    inbox_group_commit_max_batch: int = 256
    # 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h: about 16 h before a dead letter.
    retry_schedule_s: list[float] = Field(
        default_factory=lambda: [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800]
    )
    retry_jitter: float = 0.2
    # A throttled or timed-out upstream is given a minute before it is asked again.
    retry_throttled_min_s: float = 60.0
    retention_inbox_days: int = 30
    retention_attempts_days: int = 90
    retention_interval_s: float = 3600.0
    replay_max_window_days: int = 14

    # --- AXP --------------------------------------------------------------------------
    axp_base_url: str | None = None
    axp_account_id: str | None = None
    axp_client_id: str | None = None
    axp_client_secret: SecretStr | None = None
    axp_app_key: SecretStr | None = None
    # The callback URL is the only protection AXP offers (it signs nothing): ≥ 32 chars.
    axp_callback_token: SecretStr = SecretStr("dev-callback-token-0000000000000000")
    axp_subscription_reconcile_s: float = 900.0
    axp_subscription_event_types: list[str] = Field(default_factory=lambda: list(AXP_EVENT_TYPES))
    # Refresh at 80 % of expires_in so no request carries a token about to expire.
    axp_token_refresh_ratio: float = 0.8
    axp_media_max_bytes: int = 25 * 1024 * 1024

    # --- Nexus (Genesys Digital Channels) ---------------------------------------------
    nexus_base_url: str | None = None
    nexus_ccid: str | None = None
    nexus_api_key: SecretStr | None = None
    nexus_signature_encoding: Literal["hex", "base64", "auto"] = "hex"
    nexus_media_max_bytes: int = 25 * 1024 * 1024

    # --- Akixi ------------------------------------------------------------------------
    akixi_url: str | None = None
    akixi_user: str | None = None
    akixi_password: SecretStr | None = None

    # ----------------------------------------------------------------------------------

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value[len("sqlite:///") :]
        return value

    @field_validator("public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("json" if self.env == "prod" else "console")

    @property
    def sandbox_mode(self) -> bool:
        """Simulated upstreams are used only in dev, and only until real ones are configured."""
        if self.env == "prod":
            return False
        if self.sandbox is not None:
            return self.sandbox
        return not (self.axp_base_url or self.nexus_base_url)

    def secret_values(self) -> list[str]:
        """Every configured secret value, for log redaction."""
        values = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                values.append(value.get_secret_value())
        return values

    def problems(self) -> list[str]:
        """One line per setting that makes this configuration unusable."""
        found: list[str] = []
        if self.env != "prod":
            return found
        required = {"secret_key": self.secret_key, "admin_token": self.admin_token,
                    "axp_callback_token": self.axp_callback_token}
        for name, secret in required.items():
            var = f"BRIDGE_{name.upper()}"
            raw = secret.get_secret_value() if secret else ""
            if not raw:
                found.append(f"{var} is missing: it is required when BRIDGE_ENV=prod")
            elif _is_placeholder(raw):
                found.append(f"{var} holds a placeholder value: set a real secret for BRIDGE_ENV=prod")
            elif len(raw) < 32:
                found.append(f"{var} is too short: use at least 32 random characters")
        if self.sandbox:
            found.append("BRIDGE_SANDBOX=true is not allowed when BRIDGE_ENV=prod")
        if not self.public_base_url.startswith("https://"):
            found.append("BRIDGE_PUBLIC_BASE_URL must be an https:// URL when BRIDGE_ENV=prod")
        return found

    def ensure_usable(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems[0])

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets masked, for `check-config`."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********" if value.get_secret_value() else ""
            elif name == "database_url":
                value = _mask_url_password(value)
            shown[f"BRIDGE_{name.upper()}"] = value
        return shown

    @cached_property
    def callback_base_url(self) -> str:
        return self.public_base_url


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def _mask_url_password(url: str) -> str:
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def get_settings() -> Settings:
    return Settings()
