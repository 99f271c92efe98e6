"""Create the Open Messaging integration that points at the bridge, and its channel mapping.

The webhook URL carries the integration id, which Genesys assigns on creation: the
integration is created with a placeholder URL, the channel mapping is stored (with the
generated signature secret token, encrypted), and then the URL is pointed at the channel's
webhook. Until that last call, webhooks go to the placeholder and are refused (404); no
conversation exists on a new integration, so nothing is lost.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from channel_bridge.platforms.genesys_cloud.client import GenesysCloudClient
from channel_bridge.platforms.genesys_cloud.schemas import IntegrationRequest

WEBHOOK_PATH = "/genesys-cloud/integrations/{integrationId}/webhook"
PLACEHOLDER_ID = "pending"
INTEGRATIONS_NOTE = (
    "delete it in Admin > Message > Platforms, or store the channel with "
    "`channel-bridge channels add --backend genesys-cloud`"
)


class ProvisioningError(Exception):
    """The integration cannot be provisioned as asked (nothing was sent)."""


def webhook_url(public_base_url: str, integration_id: str) -> str:
    """The bridge's webhook for one integration; (read) Genesys calls it on port 443 only."""
    parts = urlsplit(public_base_url)
    if parts.scheme != "https" or parts.port not in (None, 443):
        raise ProvisioningError(
            "BRIDGE_PUBLIC_BASE_URL must be https on port 443: Genesys Cloud calls no other port"
        )
    return public_base_url.rstrip("/") + WEBHOOK_PATH.format(integrationId=integration_id)


def new_secret_token() -> str:
    """A signature secret token: 43 random URL-safe characters (Genesys wants > 15)."""
    return secrets.token_urlsafe(32)


def integration_request(name: str, public_base_url: str, secret_token: str) -> IntegrationRequest:
    return IntegrationRequest(
        name=name,
        outboundNotificationWebhookUrl=webhook_url(public_base_url, PLACEHOLDER_ID),
        outboundNotificationWebhookSignatureSecretToken=secret_token,
    )


@dataclass(frozen=True, slots=True)
class Provisioned:
    integration_id: str
    webhook_url: str


async def create_integration(client: GenesysCloudClient, request: IntegrationRequest) -> str:
    """The new integration's id."""
    created = await client.create_integration(request)
    return created.id


async def point_webhook(
    client: GenesysCloudClient, integration_id: str, public_base_url: str, *, name: str
) -> Provisioned:
    url = webhook_url(public_base_url, integration_id)
    await client.update_webhook_url(integration_id, url, name=name)
    return Provisioned(integration_id, url)
