"""The Async and SMS service definitions for the Digital Channels provisioning API.

(seed) `POST {nexusURL}/nexus/v3/provisioning/services/{ccid}/Async` with `x-api-key` and
`x-ccid`; `data.channels[]` carries `channelId` and `webhook.url`, `secret.channels[]`
carries `webhook.secret` and `api.secret` per channel. The SMS service selects the Async
provider: `{"url": "N/A", "data": {"provider": "Async"}, "secret": {}}`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import CHANNEL_BACKEND_NEXUS
from channel_bridge.mappings.repository import ChannelRepository
from channel_bridge.platforms.nexus.client import API_KEY_HEADER, CCID_HEADER, encode_json
from channel_bridge.platforms.nexus.errors import error_for_response
from channel_bridge.security import SecretBox, SecretBoxError
from channel_bridge.settings import Settings

MASK = "**********"
ASYNC_SERVICE = "Async"
SMS_SERVICE = "SMS"
SMS_SERVICE_BODY: dict[str, Any] = {"url": "N/A", "data": {"provider": "Async"}, "secret": {}}


class ProvisioningError(Exception):
    """One line an operator can act on; never contains a secret."""


@dataclass(frozen=True)
class ProvisionedChannel:
    channel_id: str
    webhook_secret: SecretStr
    api_secret: SecretStr


def webhook_url(settings: Settings, channel_id: str) -> str:
    return f"{settings.public_base_url}/nexus/channels/{quote(channel_id, safe='+')}/webhook"


def async_service_body(
    settings: Settings, channels: Sequence[ProvisionedChannel]
) -> dict[str, Any]:
    """The Async service definition with real secrets (for the wire only)."""
    return {
        "data": {
            "channels": [
                {
                    "channelId": channel.channel_id,
                    "webhook": {"url": webhook_url(settings, channel.channel_id)},
                }
                for channel in channels
            ]
        },
        "secret": {
            "channels": [
                {
                    "channelId": channel.channel_id,
                    "webhook": {"secret": channel.webhook_secret.get_secret_value()},
                    "api": {"secret": channel.api_secret.get_secret_value()},
                }
                for channel in channels
            ]
        },
    }


def masked(body: dict[str, Any]) -> dict[str, Any]:
    """The body with every value under `secret` replaced by a mask (channel ids kept)."""
    shown = copy.deepcopy(body)

    def mask(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            return {
                k: (node_v if k == "channelId" else mask(node_v, k)) for k, node_v in node.items()
            }
        if isinstance(node, list):
            return [mask(item) for item in node]
        return MASK if node not in (None, "") else node

    if "secret" in shown:
        shown["secret"] = mask(shown["secret"])
    return shown


async def load_channels(
    sessionmaker: async_sessionmaker[AsyncSession], secret_box: SecretBox | None
) -> list[ProvisionedChannel]:
    """The enabled channels with their current secrets decrypted (the newest webhook secret)."""
    async with sessionmaker() as session:
        rows = await ChannelRepository(session).list_enabled()
    # Genesys Cloud channels are provisioned by `channel-bridge genesys-cloud provision`.
    rows = [row for row in rows if row.backend == CHANNEL_BACKEND_NEXUS]
    if not rows:
        raise ProvisioningError("no enabled Nexus channels in the database: add channels first")
    if secret_box is None:
        raise ProvisioningError("BRIDGE_SECRET_KEY is not set: channel secrets cannot be decrypted")
    channels = []
    for row in rows:
        if not row.webhook_secrets_encrypted:
            raise ProvisioningError(f"channel {row.nexus_channel_id} has no webhook secret")
        if not row.api_secret_encrypted:
            raise ProvisioningError(f"channel {row.nexus_channel_id} has no API secret")
        try:
            webhook_secrets = secret_box.decrypt_list(row.webhook_secrets_encrypted)
            api_secret = secret_box.decrypt(row.api_secret_encrypted)
        except (SecretBoxError, ValueError):
            raise ProvisioningError(
                f"channel {row.nexus_channel_id}: its secrets do not decrypt with BRIDGE_SECRET_KEY"
            ) from None
        if not webhook_secrets:
            raise ProvisioningError(f"channel {row.nexus_channel_id} has no webhook secret")
        # The list is kept newest first; Nexus signs with one secret, the newest.
        channels.append(ProvisionedChannel(row.nexus_channel_id, webhook_secrets[0], api_secret))
    return channels


def missing_settings(settings: Settings) -> list[str]:
    missing = []
    if not settings.nexus_base_url:
        missing.append("BRIDGE_NEXUS_BASE_URL")
    if not settings.nexus_ccid:
        missing.append("BRIDGE_NEXUS_CCID")
    if settings.nexus_api_key is None or not settings.nexus_api_key.get_secret_value():
        missing.append("BRIDGE_NEXUS_API_KEY")
    return missing


def service_url(settings: Settings, service: str) -> str:
    """The provisioning URL; unset settings show as `<BRIDGE_…>` (only a dry run gets that far)."""
    ccid = settings.nexus_ccid or "<BRIDGE_NEXUS_CCID>"
    path = settings.nexus_provisioning_path.format_map(
        {"ccid": quote(ccid, safe="<>"), "service": quote(service, safe="")}
    )
    return (settings.nexus_base_url or "<BRIDGE_NEXUS_BASE_URL>").rstrip("/") + path


async def post_service(
    http: httpx.AsyncClient, settings: Settings, service: str, body: dict[str, Any]
) -> httpx.Response:
    """POST the service definition; raises a typed Nexus error on a non-2xx answer."""
    missing = missing_settings(settings)
    if missing:
        raise ProvisioningError(f"{', '.join(missing)} must be set to provision Nexus services")
    assert settings.nexus_api_key is not None and settings.nexus_ccid is not None
    response = await http.post(
        service_url(settings, service),
        content=encode_json(body),
        headers={
            "Content-Type": "application/json",
            API_KEY_HEADER: settings.nexus_api_key.get_secret_value(),
            CCID_HEADER: settings.nexus_ccid,
        },
    )
    if response.status_code >= 300:
        raise error_for_response(response, f"provision {service}")
    return response
