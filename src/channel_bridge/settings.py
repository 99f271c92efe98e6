"""All configuration, read from BRIDGE_* environment variables, `.env` and a secrets dir.

Every tunable carries the reason for its default. Secrets are `SecretStr`: they print as
`**********` and are unwrapped only where they are used.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
from functools import cached_property
from pathlib import Path
from string import Formatter
from typing import Any, Literal
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values shipped as dev defaults or in .env.example; refused outside dev.
# Words only a hand-written stand-in contains: a random secret of 32+ characters from a
# 64-symbol alphabet holds a given 7-letter word with odds far below one in a billion, so real
# secrets are never refused. Short generic words ("xxx", "todo") are matched only whole.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "replace-me", "example")
PLACEHOLDER_PREFIXES = ("dev-", "sandbox-")
PLACEHOLDER_VALUES = ("xxx", "todo", "secret", "password", "changeit")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./var/bridge.db"

# The upstreams the bridge calls: prod requires https for each, and in dev a configured one
# that is not on loopback means real traffic, so the published dev secrets are refused.
UPSTREAM_URL_SETTINGS = ("axp_base_url", "nexus_base_url", "akixi_url")
# Published in this repository as dev defaults: never usable once the bridge is reachable.
DEV_DEFAULT_SECRETS = ("admin_token", "secret_key", "axp_callback_token")

AXP_EVENT_TYPES = (
    "MESSAGES",
    "PARTICIPANT_ADDED",
    "PARTICIPANT_DISCONNECTED",
    "ENGAGEMENT_CREATED",
    "ENGAGEMENT_ERROR",
    "TYPING",
)


class CircuitLimitSettings(BaseModel):
    """`BRIDGE_CIRCUIT_LIMITS` entry: limits towards one upstream, per process."""

    model_config = ConfigDict(extra="forbid")

    max_in_flight: int | None = Field(default=None, ge=1)
    rate_per_s: float | None = Field(default=None, gt=0)


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
        # A refused value may be a secret (the database URL holds a password): never echo it.
        hide_input_in_errors=True,
    )

    # --- core -------------------------------------------------------------------------
    env: Literal["dev", "prod"] = "dev"
    database_url: str = DEFAULT_SQLITE_URL
    public_base_url: str = "http://localhost:8080"
    admin_token: SecretStr = SecretStr("dev-admin-token")
    secret_key: SecretStr | None = SecretStr("dev-secret-key-change-me")
    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None  # None: json in prod, console in dev
    # Levels of named loggers, e.g. {"sqlalchemy.engine": "INFO"}. The SQL loggers
    # (sqlalchemy, aiosqlite, asyncpg) stay at WARNING unless named here, whatever
    # BRIDGE_LOG_LEVEL: below that they log statement parameters, i.e. raw webhook bodies.
    log_levels: dict[str, str] = Field(default_factory=dict)
    # AXP and Nexus payloads are small JSON documents; media travels by URL, never inline.
    max_body_bytes: int = 1024 * 1024
    # The relay worker and the webhook routes share the pool. Keep db_pool_size above
    # worker_concurrency + inbox_group_commit_max_inflight + a few: connections opened
    # beyond the pool are closed on return (a pool of 20 opened 280 new PostgreSQL backends
    # in one 4,000-delivery drain).
    db_pool_size: int = 30
    db_max_overflow: int = 10
    db_connect_timeout_s: float = 5.0
    # PostgreSQL planner statistics refreshed as the bridge's tables grow (db/statistics.py):
    # checked every db_analyze_interval_s (0: left to autovacuum, which looks once a minute),
    # a table is analyzed once the rows changed since its last ANALYZE reach its size then,
    # and at least db_analyze_min_changes. On a fresh database the relay's claim cost 6x
    # more before this (docs/performance.md).
    db_analyze_interval_s: float = Field(default=2.0, ge=0)
    db_analyze_min_changes: int = Field(default=1000, ge=1)
    # Outbound HTTP: AXP answers a send in well under a second; 10 s leaves room for media.
    http_timeout_s: float = 10.0
    http_connect_timeout_s: float = 5.0
    # Per upstream client (each has its own pool); at or above worker_concurrency, or sends
    # queue for a connection (aiohttp's queue is not first come, first served).
    http_max_connections: int = 100
    # Idle connections are closed before the upstream's own keep-alive timeout (uvicorn's is
    # 5 s), so a request never goes out on a connection the server is just closing.
    http_keepalive_s: float = Field(default=4.0, gt=0)
    # The outbound pool: aiohttp's (measured 4-5x faster here, docs/performance.md) or
    # httpx's own; both keep the httpx client API.
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    # None: sandbox when env=dev and no AXP/Nexus base URL is configured. Never in prod.
    sandbox: bool | None = None

    # `channel-bridge serve` processes (uvicorn workers; `--workers` overrides). One per core
    # is the ceiling: a process is one event loop on one core, and each runs its own relay
    # worker (safe: the two-replica drill). 1 by default: on the 2-core bench machine, which
    # also runs PostgreSQL, the AXP simulator and the load generator, 2 processes measured
    # no gain (Nexus webhook 0.10 of bare FastAPI against 0.12 with 1, p99 at 1,000/s 5-8 s
    # either way; docs/performance.md, "The acknowledgement path"). On a node with spare
    # cores, raise it towards their number.
    serve_workers: int = Field(default=1, ge=1)

    # Young-generation GC threshold for a serving process; start-up objects are frozen too.
    # 0 keeps Python's defaults (700). See ops/gc_tuning.py for the measurements.
    gc_gen0_threshold: int = Field(default=200_000, ge=0)

    # Attachments stream through a spool (media.py): in memory up to this size, then on disk,
    # so a 25 MiB file costs about 1 MiB of memory instead of three copies of itself.
    media_spool_memory_bytes: int = Field(default=1024 * 1024, ge=0)
    # Where spools past that size go; None: the temp directory (TMPDIR, /tmp: the pod's
    # emptyDir, sized above media_max_in_flight_bytes in docker/k8s/deployment.yaml).
    media_spool_dir: str | None = None
    # Media bytes being transferred at once per process (reserved by declared size, else the
    # platform's max): four 25 MiB attachments. Memory held is at most this and in practice
    # the spools' in-memory parts; the rest waits its turn (docs/operations.md, memory sizing).
    media_max_in_flight_bytes: int = Field(default=100 * 1024 * 1024, ge=1)

    # Channel mappings are kept this long for the webhooks and the relay (0 turns the cache
    # off). Writes clear it at once in every process (NOTIFY on PostgreSQL); this bounds how
    # stale another process can be while its LISTEN connection is down.
    channel_cache_ttl_s: float = 5.0

    # An operator console login (/admin/ui) lasts one working shift (8 h); then log in again.
    console_session_ttl_s: float = Field(default=8 * 3600.0, gt=0)

    # --- relay ------------------------------------------------------------------------
    worker_enabled: bool = True
    # Calls in flight per process. Upstream calls are I/O bound: against a 10 ms upstream one
    # process drained 6,000 deliveries at ~1,600/s with 64 (docs/performance.md).
    worker_concurrency: int = 64
    # A lease longer than the slowest call (timeout + media) so a live worker keeps its rows.
    worker_lease_s: float = 60.0
    # Fallback only: accept() wakes the worker in-process and LISTEN/NOTIFY across processes.
    worker_poll_interval_s: float = 1.0
    worker_claim_batch: int = 64
    # While deliveries are in flight, claim again once this many slots are free (0: a
    # quarter of worker_concurrency) or worker_claim_coalesce_ms after the first one freed,
    # so one claim serves several slots; an idle worker claims at once.
    worker_claim_low_water: int = Field(default=0, ge=0)
    worker_claim_coalesce_ms: float = 5.0
    # Acknowledgements first (relay/ack_priority.py): while the event loop's mean lag over a
    # 50 ms period exceeds this, the relay worker in the same process halves its slots, down
    # to worker_ack_priority_floor calls in flight; 0 turns it off. The lag, not the ack
    # time, because the ack time is mostly commit time that yielding cannot shorten (the
    # first version read it and throttled the relay at an ordinary 200 msg/s). Default
    # chosen by bench (docs/performance.md).
    worker_loop_lag_target_ms: float = Field(default=2.0, ge=0)
    # ...and only while the inbox's acknowledgements of the period took longer than this on
    # average: a loop that is late while acks are quick is a busy or slow machine carrying its
    # load, and throttling the relay there only made it fall behind (AXP waits 5 s for a 2XX,
    # Nexus 10 s).
    worker_ack_budget_ms: float = Field(default=250.0, ge=0)
    # The relay's share under any acknowledgement load: the backlog always drains.
    worker_ack_priority_floor: int = Field(default=2, ge=1)
    # Circuit breakers, one per upstream (relay/circuits.py). Five failures in a row open one:
    # a single slow or broken request is no outage, five in a row almost always are.
    circuit_failure_threshold: int = Field(default=5, ge=1)
    # While open, one probe after 1 s, doubling up to 10 s: an upstream that comes back is
    # found within 10 s (so the backlog is flowing again well within 15 s of its return),
    # and a long outage costs the upstream about six probes a minute.
    circuit_probe_initial_s: float = Field(default=1.0, gt=0)
    circuit_probe_max_s: float = Field(default=10.0, gt=0)
    # A Retry-After longer than this is taken as this (an hour: a misconfigured upstream must
    # not silence a destination for days).
    circuit_pause_max_s: float = Field(default=3600.0, gt=0)
    # Per circuit name ("axp", "nexus", "akixi"): calls in flight per process and starts per
    # second per process, e.g. {"axp": {"max_in_flight": 32, "rate_per_s": 50}}. Unset: the
    # worker's concurrency, no rate limit.
    circuit_limits: dict[str, CircuitLimitSettings] = Field(default_factory=dict)
    # Group commit: gather concurrent accepts into one transaction (≈ halves ack cost).
    inbox_group_commit_window_ms: float = 1.5
    inbox_group_commit_max_batch: int = 256
    # Batches written at once; later accepts queue for the next one, so batches grow with load.
    inbox_group_commit_max_inflight: int = 2
    # 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h: about 16 h before a dead letter.
    retry_schedule_s: list[float] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0]
    )
    retry_jitter: float = 0.2
    # A throttled or timed-out upstream is given a minute before it is asked again.
    retry_throttled_min_s: float = 60.0
    # Bodies (payload, raw body) of handled inbox events are kept this long...
    retention_inbox_days: int = 30
    # ...and their dedupe keys (source, external id, ack) this long: Nexus messages carry no
    # timestamp, so only a remembered key refuses a captured webhook replayed later.
    retention_tombstone_days: int = Field(default=365, ge=1)
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
    # This one is in the Digital Notification subscription URL (/notifications).
    axp_callback_token: SecretStr = SecretStr("dev-callback-token-0000000000000000")
    # Still accepted while AXP moves to the new token (a rotation without lost callbacks).
    axp_callback_token_previous: SecretStr | None = None
    # The lifecycle callback (/integrations) can disable channels: a token of its own. None
    # keeps the notification token(s) for it, as before the two were separated.
    axp_lifecycle_token: SecretStr | None = None
    axp_lifecycle_token_previous: SecretStr | None = None
    axp_subscription_reconcile_s: float = 900.0
    axp_subscription_event_types: list[str] = Field(default_factory=lambda: list(AXP_EVENT_TYPES))
    # Refresh at 80 % of expires_in so no request carries a token about to expire.
    axp_token_refresh_ratio: float = 0.8
    axp_media_max_bytes: int = 25 * 1024 * 1024
    # headers.sourceType on messages we send; AXP echoes it (the official sample uses "SMS").
    axp_source_type: str = "nexus-async"
    # Callback attachment URLs are relative (`/v1/media/…`); the spec servers put the media
    # store under this path on the API host (inferred, so configurable).
    axp_media_store_path: str = "/api/media-store"
    # Off only for tests and one-off tools: the reconcile loop is what heals a deleted
    # subscription, since the Digital Notification API has no renew and no expiry.
    axp_subscription_reconcile_enabled: bool = True
    # Admin Voice changes finish asynchronously (202, then poll GET by id). No duration is
    # published; 5 min covers a carrier number order, and the operator can check again later.
    axp_admin_poll_timeout_s: float = Field(default=300.0, gt=0)
    # First check after 1 s, doubling to at most 15 s: quick answers for quick changes,
    # about 25 requests over the whole 5 min for slow ones.
    axp_admin_poll_initial_interval_s: float = Field(default=1.0, gt=0)
    axp_admin_poll_max_interval_s: float = Field(default=15.0, gt=0)
    # The largest page every admin listing accepts (spec maximum 50): fewest round trips.
    axp_admin_page_size: int = Field(default=50, ge=5, le=50)

    # --- Nexus (Genesys Digital Channels) ---------------------------------------------
    nexus_base_url: str | None = None
    nexus_ccid: str | None = None
    nexus_api_key: SecretStr | None = None
    nexus_signature_encoding: Literal["hex", "base64", "auto"] = "hex"
    nexus_media_max_bytes: int = 25 * 1024 * 1024
    # Everything below covers a detail the public Nexus docs do not publish; each default is
    # our choice, listed with its reason in docs/nexus-contract.md. (read) marks a read fact.
    # Inbound-message path: inferred from the read media path; not published.
    nexus_messages_path: str = "/nexus/v3/channels/{channelId}/messages"
    # Receipts exist (read) but their path is unknown: provisional.
    nexus_receipts_path: str = "/nexus/v3/channels/{channelId}/receipts"
    # Typing is not documented for Async at all: off unless a tenant proves it exists.
    nexus_typing_enabled: bool = False
    nexus_typing_path: str = "/nexus/v3/channels/{channelId}/typing"
    # (read) media upload path.
    nexus_media_path: str = "/nexus/v3/channels/{channelId}/media"
    # Download of a synthetic `genesys://nexus/<mediaId>` URL: not published; provisional.
    nexus_media_download_path: str = "/nexus/v3/media/{mediaId}"
    # (read) provisioning path from the SMS setup guide.
    nexus_provisioning_path: str = "/nexus/v3/provisioning/services/{ccid}/{service}"
    # What X-Hub-Signature covers on a multipart upload is not documented: the exact encoded
    # multipart body is the natural reading of "the body of the message".
    nexus_multipart_signature: Literal["body", "file", "none"] = "body"
    # Field names of the provisional NexusWebhookMessage: comma-separated aliases, first match
    # wins, dotted paths reach into objects. The first alias names the field we send.
    nexus_field_message_id: str = "id,messageId"
    nexus_field_channel_id: str = "channelId,channel.id"
    nexus_field_to: str = "to,channel.to.id"
    nexus_field_from: str = "from,channel.from.id"
    nexus_field_text: str = "text,body"
    nexus_field_media: str = "media,attachments"
    nexus_field_media_url: str = "url,mediaUrl"
    nexus_field_media_content_type: str = "contentType,mimetype,mimeType"
    nexus_field_media_filename: str = "filename,fileName,name"
    nexus_field_timestamp: str = "timestamp,createdAt"
    nexus_field_typing: str = "typing,isTyping"
    nexus_field_receipt_message_id: str = "messageId"
    nexus_field_receipt_status: str = "status"
    nexus_field_receipt_reason: str = "reason"

    @field_validator(
        "nexus_field_message_id",
        "nexus_field_channel_id",
        "nexus_field_to",
        "nexus_field_from",
        "nexus_field_text",
        "nexus_field_media",
        "nexus_field_media_url",
        "nexus_field_media_content_type",
        "nexus_field_media_filename",
        "nexus_field_timestamp",
        "nexus_field_typing",
        "nexus_field_receipt_message_id",
        "nexus_field_receipt_status",
        "nexus_field_receipt_reason",
    )
    @classmethod
    def _nexus_alias_list(cls, value: str) -> str:
        if not any(part.strip() for part in value.split(",")):
            raise ValueError("needs at least one field name (comma-separated aliases)")
        return value

    @field_validator(
        "nexus_messages_path", "nexus_receipts_path", "nexus_typing_path", "nexus_media_path"
    )
    @classmethod
    def _nexus_channel_path(cls, value: str) -> str:
        if not value.startswith("/") or "{channelId}" not in value:
            raise ValueError("must start with / and contain {channelId}")
        return value

    @field_validator("nexus_media_download_path")
    @classmethod
    def _nexus_media_id_path(cls, value: str) -> str:
        if not value.startswith("/") or "{mediaId}" not in value:
            raise ValueError("must start with / and contain {mediaId}")
        return value

    # --- Genesys Cloud (Open Messaging) -------------------------------------------------
    # (read) The region's domain, e.g. mypurecloud.com (us-east-1) or mypurecloud.de: the API
    # is https://api.<region> and OAuth is https://login.<region> (docs/genesys-cloud-contract.md).
    genesys_cloud_region: str = "mypurecloud.com"
    # Overrides of the two hosts, for the sandbox and tests; unset: derived from the region.
    genesys_cloud_api_base_url: str | None = None
    genesys_cloud_login_base_url: str | None = None
    genesys_cloud_client_id: str | None = None
    genesys_cloud_client_secret: SecretStr | None = None
    # Refresh at 80 % of expires_in, as for AXP: no request carries a token about to expire.
    genesys_cloud_token_refresh_ratio: float = Field(default=0.8, gt=0, le=1)
    # (inferred) Genesys Cloud fetches an inbound attachment from its `url` itself, so an AXP
    # agent's attachment is handed over as a fresh signed AXP media-store download URL (no
    # credentials, expires with its `ttl`). False: only the text is relayed and a warning logged.
    genesys_cloud_relay_axp_attachments: bool = True

    # --- Akixi ------------------------------------------------------------------------
    akixi_url: str | None = None
    akixi_user: str | None = None
    akixi_password: SecretStr | None = None
    # Not published by Akixi; text/xml is what a bare <Request> document is sent as.
    akixi_content_type: str = "text/xml; charset=UTF-8"
    # The Authenticate hash is not published: a documented choice (docs/akixi-contract.md).
    akixi_password_scheme: Literal["sha256-nonce", "sha1-nonce", "md5-nonce", "plain"] = (
        "sha256-nonce"
    )
    # What is hashed ({nonce}, {password}, {user}) and how the digest is written: the
    # commonest digest-auth shape, kept adjustable until Akixi confirms its rule.
    akixi_password_digest_input: str = "{nonce}{password}"
    akixi_password_digest_encoding: Literal["hex", "hex-upper", "base64"] = "hex"
    # CreateSession's answer and Authenticate's payload names were cut off in the readable
    # docs; these mirror the REST twin's {"SessionID", "Nonce"} (docs/akixi-contract.md §3).
    akixi_session_id_name: str = "SessionID"
    akixi_nonce_name: str = "Nonce"
    akixi_auth_user_property: str = "UserID"
    akixi_auth_password_property: str = "Password"
    # Marks the entries we own in Akixi, so sync never touches anyone else's: the UniqueID
    # prefix (when we may set UniqueIDs) and the tag in each entry's Description.
    akixi_unique_id_prefix: str = "axp-"
    # Seed 001: "Only specify a GUID if specified by the system-wide administrative user".
    # Off: Akixi assigns the UniqueID and the bridge finds its entries by Description tag.
    akixi_send_unique_id: bool = False
    # Description of our entries. List returns only IntegrationType and Description by
    # default, so {key} (prefix + integration id) is what identifies an entry as ours.
    akixi_description_format: str = "{name} [{key}]"
    # Scope of our entries: PartitionGUID wins; else TelSysID + PartIDInTelSys (Akixi's rule).
    akixi_partition_guid: str | None = None
    akixi_telsys_id: str | None = None
    akixi_part_id_in_telsys: str | None = None
    # AXP messaging integrations are chat-like; Akixi knows "LiveChat" and "POP3 SMTP".
    akixi_integration_type: str = "LiveChat"
    # The LiveChat credentials the seed's Add and Change send (APICommunicationSettings).
    # Unset, they are left out: a reporting-only mirror has none to give.
    akixi_auth_user_id1: str | None = None
    akixi_auth_password1: SecretStr | None = None
    akixi_auth_password2: SecretStr | None = None
    # None: True once AuthUserID1 and AuthPassword1 are set, else False, so Akixi is never
    # asked to connect to a LiveChat account it has no credentials for.
    akixi_comms_enabled: bool | None = None
    # The Advanced container, with the seed examples' values.
    akixi_api_comms_logging_enabled: bool = False
    akixi_api_comms_logging_inc_class_names: bool = False
    akixi_internal_diag_dump_enabled: bool = False
    # Akixi's own default Limit for OmnichannelIntList.
    akixi_list_page_size: int = Field(default=1000, ge=1, le=1000)
    # After Akixi refuses our credentials, no new login for this long (repeated tries look
    # like brute force and the account may lock); deliveries wait instead of hammering it.
    akixi_auth_failure_backoff_s: float = 900.0

    @field_validator("akixi_password_digest_input")
    @classmethod
    def _akixi_digest_input(cls, value: str) -> str:
        _check_template(value, required={"password"}, allowed={"nonce", "password", "user"})
        return value

    @field_validator("akixi_description_format")
    @classmethod
    def _akixi_description_format(cls, value: str) -> str:
        _check_template(value, required={"key"}, allowed={"name", "key"}, once=True)
        return value

    @property
    def akixi_comms_enabled_value(self) -> bool:
        """CommsEnabled of our entries: the setting, else whether LiveChat credentials are set."""
        if self.akixi_comms_enabled is not None:
            return self.akixi_comms_enabled
        password = self.akixi_auth_password1
        return bool(self.akixi_auth_user_id1 and password and password.get_secret_value())

    # ----------------------------------------------------------------------------------

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        if value.startswith("sqlite:///"):
            value = "sqlite+aiosqlite:///" + value[len("sqlite:///") :]
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            # The value is not echoed: it may hold the database password.
            raise ValueError(
                "not a database URL: use postgresql://user:password@host:5432/name "
                "or sqlite:///path/to/bridge.db"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}: use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("public_base_url", "axp_base_url", "nexus_base_url", "akixi_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return value  # unset (an empty variable counts as unset)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an absolute URL with its scheme, e.g. https://api.example.net"
            )
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key_list(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            split_secret_keys(value.get_secret_value())  # a malformed list is refused here
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
        if self.secret_key is not None:
            with contextlib.suppress(ValueError):
                values += split_secret_keys(self.secret_key.get_secret_value())
        return values

    def callback_tokens(self, route: Literal["notifications", "lifecycle"]) -> list[SecretStr]:
        """The tokens an AXP callback route accepts: the current one, then the previous."""
        current, previous = self.axp_callback_token, self.axp_callback_token_previous
        lifecycle = self.axp_lifecycle_token
        if route == "lifecycle" and lifecycle is not None and lifecycle.get_secret_value():
            current, previous = lifecycle, self.axp_lifecycle_token_previous
        return [token for token in (current, previous) if token and token.get_secret_value()]

    def problems(self, *, bind_host: str | None = None) -> list[str]:
        """One line per setting that makes this configuration unusable (served on `bind_host`)."""
        found: list[str] = []
        if self.env != "prod":
            return self._exposed_dev_problems(bind_host)
        required = {
            "secret_key": self.secret_key,
            "admin_token": self.admin_token,
            "axp_callback_token": self.axp_callback_token,
        }
        optional_tokens = (
            "axp_callback_token_previous",
            "axp_lifecycle_token",
            "axp_lifecycle_token_previous",
        )
        for name in (*required, *optional_tokens):
            var = f"BRIDGE_{name.upper()}"
            secret = getattr(self, name)
            raw = secret.get_secret_value() if secret else ""
            if not raw and name in optional_tokens:
                continue
            try:
                values = split_secret_keys(raw) if name == "secret_key" else [raw]
            except ValueError:
                found.append(f"{var} is neither one key nor a JSON list of keys")
                continue
            for index, value in enumerate(values or [""]):
                label = f"{var} (key {index + 1} of {len(values)})" if len(values) > 1 else var
                if not value:
                    found.append(f"{label} is missing: it is required when BRIDGE_ENV=prod")
                elif _is_placeholder(value):
                    found.append(
                        f"{label} holds a placeholder value: set a real secret for BRIDGE_ENV=prod"
                    )
                elif len(value) < 32:
                    found.append(f"{label} is too short: use at least 32 random characters")
        # Optional secrets may be absent, but a value copied from .env.example is never real.
        for name in type(self).model_fields:
            value = getattr(self, name)
            if (
                name not in required
                and name not in optional_tokens
                and isinstance(value, SecretStr)
                and _is_placeholder(value.get_secret_value())
            ):
                found.append(
                    f"BRIDGE_{name.upper()} holds a placeholder value: set a real secret "
                    "for BRIDGE_ENV=prod"
                )
        if _is_placeholder(urlsplit(self.database_url).password or ""):
            found.append(
                "BRIDGE_DATABASE_URL holds a placeholder password: set the real one "
                "for BRIDGE_ENV=prod"
            )
        if self.sandbox:
            found.append("BRIDGE_SANDBOX=true is not allowed when BRIDGE_ENV=prod")
        if not self.public_base_url.startswith("https://"):
            found.append("BRIDGE_PUBLIC_BASE_URL must be an https:// URL when BRIDGE_ENV=prod")
        for name in UPSTREAM_URL_SETTINGS:
            url = getattr(self, name)
            if url and urlsplit(url).scheme.lower() != "https":
                # Credentials (the Akixi password, API keys, bearer tokens) would travel in clear.
                found.append(f"BRIDGE_{name.upper()} must be an https:// URL when BRIDGE_ENV=prod")
        return found

    def real_upstreams(self) -> list[str]:
        """The upstream URL settings that reach beyond this machine (not loopback, not sandbox)."""
        simulated = {"axp_base_url", "nexus_base_url"} if self.sandbox_mode else set()
        return [
            name
            for name in UPSTREAM_URL_SETTINGS
            if name not in simulated
            and getattr(self, name)
            and not is_loopback_host(urlsplit(getattr(self, name)).hostname)
        ]

    def _exposed_dev_problems(self, bind_host: str | None) -> list[str]:
        """dev: the published dev secrets are fine only on loopback with no real upstream."""
        real = self.real_upstreams()
        if real:
            reason = f"BRIDGE_{real[0].upper()} names a real upstream"
        elif bind_host is not None and not is_loopback_host(bind_host):
            reason = f"the bridge binds {bind_host}, not loopback"
        else:
            return []
        found = []
        for name in DEV_DEFAULT_SECRETS:
            secret = getattr(self, name)
            raw = secret.get_secret_value() if secret is not None else ""
            try:
                values = split_secret_keys(raw) if name == "secret_key" else [raw]
            except ValueError:
                values = [raw]
            if any(_is_placeholder(value) for value in values):
                found.append(
                    f"BRIDGE_{name.upper()} holds a placeholder value and {reason}: set a real "
                    "secret (placeholders are accepted only on loopback with simulated upstreams)"
                )
        return found

    def ensure_usable(self, *, bind_host: str | None = None) -> None:
        problems = self.problems(bind_host=bind_host)
        if problems:
            raise ConfigError(problems[0])

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets masked, for `check-config`."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********" if value.get_secret_value() else ""
            elif isinstance(value, str) and "://" in value:
                value = mask_url(value)
            shown[f"BRIDGE_{name.upper()}"] = value
        return shown

    @cached_property
    def callback_base_url(self) -> str:
        return self.public_base_url


def _check_template(
    value: str, *, required: set[str], allowed: set[str], once: bool = False
) -> None:
    """A str.format template naming only `allowed` fields, each of `required` present."""
    try:
        names = [name for _text, name, _spec, _conv in Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from None
    unknown = set(names) - allowed
    if unknown:
        raise ValueError(f"unknown placeholder {sorted(unknown)}; allowed: {sorted(allowed)}")
    for name in sorted(required):
        if name not in names:
            raise ValueError(f"must contain {{{name}}}")
        if once and names.count(name) > 1:
            raise ValueError(f"must contain {{{name}}} only once")


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    if not lowered:
        return False  # a missing value is reported as missing, not as a placeholder
    return (
        any(marker in lowered for marker in PLACEHOLDER_MARKERS)
        or lowered.startswith(PLACEHOLDER_PREFIXES)
        or lowered.strip("x*.-_ ") == ""
        or lowered in PLACEHOLDER_VALUES
    )


def split_secret_keys(value: str) -> list[str]:
    """BRIDGE_SECRET_KEY: one key, or a JSON list of keys (newest first) during a rotation."""
    if not value.lstrip().startswith("["):
        return [value] if value else []
    keys = json.loads(value)
    if not isinstance(keys, list) or not all(isinstance(key, str) and key for key in keys):
        raise ValueError("BRIDGE_SECRET_KEY must be a key or a JSON list of non-empty keys")
    return keys


def is_loopback_host(host: str | None) -> bool:
    """localhost, 127.0.0.0/8 or ::1; anything else (0.0.0.0, a name, an address) is not."""
    if not host:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Query parameters whose value is a credential (?password=, ?api_key=, ?sig=, ...).
_CREDENTIAL_PARAM = re.compile(
    r"(pass|pwd|secret|token|key|sig|auth|credential|session|^sid$|^code$)", re.IGNORECASE
)


def mask_url(url: str) -> str:
    """The URL with every credential masked: the userinfo password (a lone userinfo, often a
    token, entirely) and the value of every credential-like query or fragment parameter."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _password = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else f"***@{host}"
    return urlunsplit(
        (parts.scheme, netloc, parts.path, _mask_params(parts.query), _mask_params(parts.fragment))
    )


def _mask_params(text: str) -> str:
    if "=" not in text:
        return text
    pairs = []
    for pair in text.split("&"):
        key, equals, value = pair.partition("=")
        if equals and value and _CREDENTIAL_PARAM.search(unquote_plus(key)):
            value = "***"
        pairs.append(f"{key}{equals}{value}")
    return "&".join(pairs)


def get_settings() -> Settings:
    return Settings()
