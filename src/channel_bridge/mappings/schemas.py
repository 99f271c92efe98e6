"""Admin API and CLI models for channel mappings and integrations.

Limits come from the AXP Digital Custom Messaging spec v1.0.4 (`SendAsyncMessage`):
channelProviderId 3-256, businessAccountName (= integration id) 3-256, channelId 3-50,
customerIdentifiers key <= 50, accountId `^[a-zA-Z]{6}$`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

# E.164 allows at most 15 digits; fewer than 4 is no routable number.
E164_PATTERN = re.compile(r"^\+[1-9]\d{3,14}$")
CHANNEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ACCOUNT_ID_PATTERN = r"^[a-zA-Z]{6}$"
# An id that is safe as one URL path segment: no whitespace, no slash, and no NUL (PostgreSQL
# text refuses it; pydantic already refuses an unpaired surrogate).
PATH_SAFE_ID_PATTERN = r"^[^\s/\x00]+$"
STORABLE_TEXT_PATTERN = r"^[^\x00]*$"
# The Genesys backend a channel talks to; for genesys-cloud, nexus_channel_id is the Open
# Messaging integration id (the id in /genesys-cloud/integrations/{id}/webhook).
Backend = Literal["nexus", "genesys-cloud"]
# (read) Genesys Cloud wants an outbound webhook signature secret of more than 15 characters.
GENESYS_CLOUD_MIN_SECRET_LENGTH = 16
# Enough overlap for a rotation (new, current, previous); more is a configuration smell.
MAX_WEBHOOK_SECRETS = 5

AccountId = Annotated[str, StringConstraints(pattern=ACCOUNT_ID_PATTERN)]
ChannelProviderId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=256, pattern=PATH_SAFE_ID_PATTERN
    ),
]
IntegrationId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=256, pattern=PATH_SAFE_ID_PATTERN
    ),
]
AxpChannelId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=50)]
IdentifierKey = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$"
    ),
]
IntegrationName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=255, pattern=STORABLE_TEXT_PATTERN
    ),
]
Secret = Annotated[SecretStr, Field(min_length=1, max_length=1024)]


def check_nexus_channel_id(value: str) -> str:
    """A phone number (leading `+`) must be E.164; any other id is a plain token."""
    value = value.strip()
    if value.startswith("+"):
        if not E164_PATTERN.fullmatch(value):
            raise ValueError("a phone number must be E.164: '+' then 4 to 15 digits, no leading 0")
    elif not CHANNEL_NAME_PATTERN.fullmatch(value):
        raise ValueError("must be an E.164 number or 1-128 characters of A-Z a-z 0-9 . _ : -")
    return value


class _SecretsInput(BaseModel):
    webhook_secret: Secret | None = None
    webhook_secrets: list[Secret] | None = Field(default=None, max_length=MAX_WEBHOOK_SECRETS)
    api_secret: Secret | None = None

    @model_validator(mode="after")
    def _one_webhook_secret_field(self) -> _SecretsInput:
        if self.webhook_secret is not None and self.webhook_secrets is not None:
            raise ValueError("give webhook_secret or webhook_secrets, not both")
        return self

    def webhook_secret_values(self) -> list[str] | None:
        """The new webhook secret list (newest first), or None when not being changed."""
        if self.webhook_secret is not None:
            return [self.webhook_secret.get_secret_value()]
        if self.webhook_secrets is not None:
            return [secret.get_secret_value() for secret in self.webhook_secrets]
        return None


class ChannelCreate(_SecretsInput):
    model_config = ConfigDict(extra="forbid")

    nexus_channel_id: str
    axp_integration_id: IntegrationId
    # Taken from the integration when it carries them.
    axp_account_id: AccountId | None = None
    axp_channel_provider_id: ChannelProviderId | None = None
    axp_channel_id: AxpChannelId = "Messaging"
    customer_identifier_key: IdentifierKey = "phoneNumbers"
    enabled: bool = True
    backend: Backend = "nexus"

    _nexus_channel_id = field_validator("nexus_channel_id")(check_nexus_channel_id)

    @model_validator(mode="after")
    def _genesys_cloud_secret_length(self) -> ChannelCreate:
        if self.backend == "genesys-cloud":
            short = [
                secret
                for secret in self.webhook_secret_values() or []
                if len(secret) < GENESYS_CLOUD_MIN_SECRET_LENGTH
            ]
            if short:
                raise ValueError(
                    "a genesys-cloud webhook secret (the integration's signature secret token) "
                    f"must be at least {GENESYS_CLOUD_MIN_SECRET_LENGTH} characters"
                )
        return self


class ChannelUpdate(_SecretsInput):
    """Only the fields given change; `webhook_secrets: []` removes every webhook secret."""

    model_config = ConfigDict(extra="forbid")

    axp_integration_id: IntegrationId | None = None
    axp_account_id: AccountId | None = None
    axp_channel_provider_id: ChannelProviderId | None = None
    axp_channel_id: AxpChannelId | None = None
    customer_identifier_key: IdentifierKey | None = None
    enabled: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        # null would be ambiguous (clear? keep?): only the secrets list can be emptied.
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None and key in cls.model_fields:
                    raise ValueError(f"{key} cannot be null; omit it to keep the current value")
        return data


class ChannelDisable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
        | None
    ) = None


class ChannelOut(BaseModel):
    """A channel mapping as shown to operators: secrets appear only as presence and count."""

    id: int
    nexus_channel_id: str
    axp_account_id: str
    axp_channel_provider_id: str
    axp_integration_id: str
    axp_channel_id: str
    customer_identifier_key: str
    backend: str
    enabled: bool
    disabled_reason: str | None
    has_webhook_secret: bool
    # None when the stored list cannot be read with the current BRIDGE_SECRET_KEY.
    webhook_secret_count: int | None
    has_api_secret: bool
    created_at: datetime
    updated_at: datetime


class IntegrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    integration_id: IntegrationId
    name: IntegrationName | None = None
    account_id: AccountId | None = None
    channel_provider_id: ChannelProviderId | None = None


class IntegrationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: IntegrationName | None = None
    account_id: AccountId | None = None
    channel_provider_id: ChannelProviderId | None = None


class IntegrationOut(BaseModel):
    integration_id: str
    name: str | None
    account_id: str | None
    channel_provider_id: str | None
    status: str
    source: str
    akixi_unique_id: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class IntegrationDeleted(BaseModel):
    integration: IntegrationOut
    # Channels this deletion disabled (nexus channel ids).
    disabled_channels: list[str]


class HeldCallbackOut(BaseModel):
    """An integration callback stored but not applied, and why."""

    id: int
    received_at: datetime
    # needs_review, then handled (resolved) or ignored (dismissed)
    status: str
    method: str | None
    problems: list[dict[str, str]]
    # What could be read (action, integration_id, name, account_id, channel_provider_id);
    # a resolution that leaves a field out takes it from here.
    hints: dict[str, str]
    # The parsed JSON body (None when empty or not storable as JSON); raw_body is exact.
    body: Any
    raw_body: str | None
    note: str | None
    handled_at: datetime | None


class HeldCallbackResolve(BaseModel):
    """The change a person read in a held callback."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["created", "updated", "deleted"]
    integration_id: IntegrationId | None = None
    name: IntegrationName | None = None
    account_id: AccountId | None = None
    channel_provider_id: ChannelProviderId | None = None


class HeldCallbackDismiss(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class HeldCallbackResolved(BaseModel):
    held: HeldCallbackOut
    integration: IntegrationOut
    disabled_channels: list[str]
