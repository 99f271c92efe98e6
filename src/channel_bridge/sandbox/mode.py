"""Sandbox mode: the bridge with simulated AXP, Nexus and Genesys Cloud upstreams, in one process.

Used by `make run` on a laptop (env=dev and no AXP/Nexus base URL configured) and by
`channel-bridge demo`. Never in prod (Settings.problems refuses it). The simulators are
reached in-process through httpx.ASGITransport, so the bridge's real clients, signatures,
tokens and retries are exercised without any network; they are also mounted under
`/sandbox/axp` and `/sandbox/nexus` so a person can look at what they received.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Channel, Integration
from channel_bridge.mappings.repository import ChannelRepository, IntegrationRepository
from channel_bridge.ops.logging import get_logger
from channel_bridge.sandbox import akixi as akixi_sandbox
from channel_bridge.sandbox.axp import AxpSimulator
from channel_bridge.sandbox.genesys_cloud import GenesysCloudSandbox, create_genesys_cloud_sandbox
from channel_bridge.sandbox.nexus import NexusSandbox, SandboxChannel, create_nexus_sandbox
from channel_bridge.security import SecretBox, SecretBoxError
from channel_bridge.settings import Settings

log = get_logger(__name__)

AXP_HOST = "https://axp.sandbox.test"
NEXUS_HOST = "https://nexus.sandbox.test"
GENESYS_CLOUD_HOST = "https://genesys-cloud.sandbox.test"
SANDBOX_ACCOUNT = "SANDBX"
SANDBOX_CCID = "00000000-0000-4000-8000-00000000cc1d"
DEMO_INTEGRATION_ID = "sandbox-integration-0001"
DEMO_CHANNEL_PROVIDER_ID = "sandbox-messaging-provider"
DEMO_NEXUS_CHANNEL = "+15550100200"
# The demo Open Messaging integration (a genesys-cloud channel) and its OAuth client.
DEMO_GENESYS_CLOUD_INTEGRATION = "5a0d1b2c-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
DEMO_GENESYS_CLOUD_SECRET_TOKEN = "sandbox-gc-signature-token-0123456789abcdef"
GENESYS_CLOUD_CLIENT_ID = "sandbox-gc-client"
GENESYS_CLOUD_CLIENT_SECRET = "sandbox-gc-client-secret"
# Simulated credentials only: sandbox mode is refused in prod.
DEMO_WEBHOOK_SECRET = "sandbox-webhook-secret-0123456789abcdef"
DEMO_API_SECRET = "sandbox-api-secret-0123456789abcdef"
AXP_CLIENT_SECRET = "sandbox-client-secret"
AXP_APP_KEY = "sandbox-app-key"
# The simulated Nexus checks no API key; the provisioning commands want one set.
NEXUS_API_KEY = "sandbox-nexus-api-key"
# Where `channel-bridge serve` mounts each simulator, under BRIDGE_PUBLIC_BASE_URL.
MOUNTS = {
    "axp": "/sandbox/axp",
    "nexus": "/sandbox/nexus",
    "akixi": "/sandbox/akixi",
    "genesys-cloud": "/sandbox/genesys-cloud",
}


def sandbox_settings(settings: Settings) -> Settings:
    """The settings with the simulated upstreams filled in (explicit sandbox=True)."""
    return settings.model_copy(
        update={
            "sandbox": True,
            "axp_base_url": AXP_HOST,
            "axp_account_id": SANDBOX_ACCOUNT,
            "axp_client_id": "sandbox-client",
            "axp_client_secret": SecretStr(AXP_CLIENT_SECRET),
            "axp_app_key": SecretStr(AXP_APP_KEY),
            "nexus_base_url": NEXUS_HOST,
            "nexus_ccid": SANDBOX_CCID,
            "genesys_cloud_api_base_url": GENESYS_CLOUD_HOST,
            "genesys_cloud_login_base_url": GENESYS_CLOUD_HOST,
            "genesys_cloud_client_id": GENESYS_CLOUD_CLIENT_ID,
            "genesys_cloud_client_secret": SecretStr(GENESYS_CLOUD_CLIENT_SECRET),
        }
    )


def served_sandbox_settings(settings: Settings) -> Settings:
    """For the operator commands in sandbox mode: the simulators `channel-bridge serve` mounts
    under BRIDGE_PUBLIC_BASE_URL, so a command acts on the same state the server relays with."""
    base = settings.public_base_url
    served = akixi_sandbox.sandbox_settings(sandbox_settings(settings))
    return served.model_copy(
        update={
            "axp_base_url": base + MOUNTS["axp"],
            "nexus_base_url": base + MOUNTS["nexus"],
            "nexus_api_key": settings.nexus_api_key or SecretStr(NEXUS_API_KEY),
            "akixi_url": base + MOUNTS["akixi"] + "/CCS/WS",
        }
    )


@dataclass
class Sandbox:
    axp: AxpSimulator
    nexus: NexusSandbox
    nexus_http: httpx.AsyncClient
    genesys_cloud: GenesysCloudSandbox
    genesys_cloud_transport: httpx.AsyncBaseTransport
    # The AXP platform's transport: the simulator in process, instead of the network.
    axp_transport: httpx.AsyncBaseTransport


def prepare_sandbox(app: FastAPI, settings: Settings) -> Sandbox:
    """Build the simulators and mount them; called from create_app, before the lifespan."""
    callback_client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=settings.public_base_url, timeout=10.0
    )
    axp = AxpSimulator(
        account_id=SANDBOX_ACCOUNT,
        client_id="sandbox-client",
        client_secret=AXP_CLIENT_SECRET,
        app_key=AXP_APP_KEY,
        base_url=AXP_HOST,
        agent=True,
        callback_client=callback_client,
    )
    nexus = NexusSandbox(ccid=SANDBOX_CCID, signature_encoding=settings.nexus_signature_encoding)
    nexus.add_channel(
        DEMO_NEXUS_CHANNEL, webhook_secret=DEMO_WEBHOOK_SECRET, api_secret=DEMO_API_SECRET
    )
    nexus_app = create_nexus_sandbox(nexus, settings)
    nexus_http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=nexus_app),
        base_url=NEXUS_HOST,
        timeout=settings.http_timeout_s,
    )
    genesys_cloud = GenesysCloudSandbox(
        client_id=GENESYS_CLOUD_CLIENT_ID, client_secret=GENESYS_CLOUD_CLIENT_SECRET
    )
    genesys_cloud.add_integration(
        DEMO_GENESYS_CLOUD_INTEGRATION,
        secret_token=DEMO_GENESYS_CLOUD_SECRET_TOKEN,
        webhook_url=f"{settings.public_base_url}/genesys-cloud/integrations/"
        f"{DEMO_GENESYS_CLOUD_INTEGRATION}/webhook",
        name="Sandbox Open Messaging",
    )
    # Genesys fetches inbound attachments from their URL: here the AXP media store, in process.
    genesys_cloud.media_fetcher = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=axp.app), timeout=settings.http_timeout_s
    )
    genesys_cloud_app = create_genesys_cloud_sandbox(genesys_cloud)
    # Before the lifespan starts the subscription reconcile, so it finds this one and does
    # not create a second.
    axp.add_subscription(
        channel_provider_id=DEMO_CHANNEL_PROVIDER_ID,
        callback_url=f"{settings.public_base_url}/axp/callbacks/"
        f"{settings.axp_callback_token.get_secret_value()}/notifications",
        event_types=list(settings.axp_subscription_event_types),
    )
    app.mount(MOUNTS["axp"], axp.app)
    app.mount(MOUNTS["nexus"], nexus_app)
    app.mount(MOUNTS["genesys-cloud"], genesys_cloud_app)
    return Sandbox(
        axp=axp,
        nexus=nexus,
        nexus_http=nexus_http,
        genesys_cloud=genesys_cloud,
        genesys_cloud_transport=httpx.ASGITransport(app=genesys_cloud_app),
        axp_transport=httpx.ASGITransport(app=axp.app),
    )


async def start_sandbox(
    app: FastAPI,
    settings: Settings,
    sandbox: Sandbox,
    stack: AsyncExitStack,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    secret_box: SecretBox,
    akixi_simulator: akixi_sandbox.AkixiSimulator | None,
) -> None:
    """Lifespan step: seed the demo integration and channel, print the banner."""
    stack.push_async_callback(sandbox.nexus_http.aclose)
    if sandbox.genesys_cloud.media_fetcher is not None:
        stack.push_async_callback(sandbox.genesys_cloud.media_fetcher.aclose)
    stack.push_async_callback(sandbox.axp.wait_idle)
    await seed_demo_channel(sessionmaker, secret_box)
    await warn_undecryptable_channels(sessionmaker, secret_box)
    if akixi_simulator is not None:  # built by the lifespan's Akixi step
        app.mount(MOUNTS["akixi"], akixi_sandbox.create_akixi_simulator(akixi_simulator))
    # Every channel the operator creates exists in the simulated Nexus too, with its secrets.
    sandbox.nexus.resolver = partial(channel_from_mappings, sessionmaker, secret_box)
    log.warning(
        "SANDBOX MODE: AXP, Nexus and Akixi are simulated in this process "
        "(see /sandbox/axp, /sandbox/nexus and /sandbox/akixi; the axp, nexus and akixi "
        "commands act on them too). Set BRIDGE_AXP_BASE_URL, "
        "BRIDGE_AXP_ACCOUNT_ID, BRIDGE_AXP_CLIENT_ID, BRIDGE_AXP_CLIENT_SECRET, "
        "BRIDGE_AXP_APP_KEY, BRIDGE_NEXUS_BASE_URL, BRIDGE_NEXUS_CCID and BRIDGE_AKIXI_URL "
        "to use real upstreams. The admin API (/admin/v1, try it at /docs) takes "
        "BRIDGE_ADMIN_TOKEN as its bearer token; README's settings table has its dev default.",
        demo_channel=DEMO_NEXUS_CHANNEL,
        webhook=f"{settings.public_base_url}/nexus/channels/{DEMO_NEXUS_CHANNEL}/webhook",
    )


async def seed_demo_channel(
    sessionmaker: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """The demo integration and channel, created once (idempotent across restarts)."""
    async with sessionmaker() as session, session.begin():
        if await IntegrationRepository(session).get(DEMO_INTEGRATION_ID) is None:
            session.add(
                Integration(
                    integration_id=DEMO_INTEGRATION_ID,
                    name="Sandbox messaging",
                    account_id=SANDBOX_ACCOUNT,
                    channel_provider_id=DEMO_CHANNEL_PROVIDER_ID,
                    status="active",
                    source="sandbox",
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
            await session.flush()
        existing = await ChannelRepository(session).get_by_nexus_channel_id(DEMO_NEXUS_CHANNEL)
        if existing is not None and _secrets_of(existing, secret_box) is None:
            # Seeded under another BRIDGE_SECRET_KEY (a .env copied from .env.example after a
            # first run): the demo secrets are known, so encrypt them again under this one.
            existing.webhook_secrets_encrypted = secret_box.encrypt_list([DEMO_WEBHOOK_SECRET])
            existing.api_secret_encrypted = secret_box.encrypt(DEMO_API_SECRET)
            existing.updated_at = utcnow()
            log.warning(
                "sandbox demo channel re-seeded: its secrets were encrypted with another "
                "BRIDGE_SECRET_KEY",
                channel=DEMO_NEXUS_CHANNEL,
            )
        if existing is None:
            session.add(
                Channel(
                    nexus_channel_id=DEMO_NEXUS_CHANNEL,
                    axp_account_id=SANDBOX_ACCOUNT,
                    axp_channel_provider_id=DEMO_CHANNEL_PROVIDER_ID,
                    axp_integration_id=DEMO_INTEGRATION_ID,
                    axp_channel_id="Messaging",
                    customer_identifier_key="phoneNumbers",
                    enabled=True,
                    webhook_secrets_encrypted=secret_box.encrypt_list([DEMO_WEBHOOK_SECRET]),
                    api_secret_encrypted=secret_box.encrypt(DEMO_API_SECRET),
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
        genesys = await ChannelRepository(session).get_by_nexus_channel_id(
            DEMO_GENESYS_CLOUD_INTEGRATION
        )
        if genesys is not None and _secrets_of(genesys, secret_box) is None:
            # As for the Nexus demo channel: its secret is known, so encrypt it again.
            genesys.webhook_secrets_encrypted = secret_box.encrypt_list(
                [DEMO_GENESYS_CLOUD_SECRET_TOKEN]
            )
            genesys.updated_at = utcnow()
        if genesys is None:
            session.add(
                Channel(
                    nexus_channel_id=DEMO_GENESYS_CLOUD_INTEGRATION,
                    backend="genesys-cloud",
                    axp_account_id=SANDBOX_ACCOUNT,
                    axp_channel_provider_id=DEMO_CHANNEL_PROVIDER_ID,
                    axp_integration_id=DEMO_INTEGRATION_ID,
                    axp_channel_id="Messaging",
                    customer_identifier_key="phoneNumbers",
                    enabled=True,
                    webhook_secrets_encrypted=secret_box.encrypt_list(
                        [DEMO_GENESYS_CLOUD_SECRET_TOKEN]
                    ),
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
            )


def _secrets_of(channel: Channel, secret_box: SecretBox | None) -> tuple[list[str], str] | None:
    """The channel's webhook secrets and API secret, or None if this key cannot read them."""
    if secret_box is None:
        return None
    try:
        webhooks = (
            secret_box.decrypt_list(channel.webhook_secrets_encrypted)
            if channel.webhook_secrets_encrypted
            else []
        )
        api = (
            secret_box.decrypt(channel.api_secret_encrypted).get_secret_value()
            if channel.api_secret_encrypted
            else ""
        )
    except SecretBoxError:
        return None
    return [value.get_secret_value() for value in webhooks], api


async def warn_undecryptable_channels(
    sessionmaker: async_sessionmaker[AsyncSession], secret_box: SecretBox | None
) -> None:
    """One warning per channel whose secrets this BRIDGE_SECRET_KEY cannot read, with the fix
    (its webhooks would be refused and its sends fail until then)."""
    async with sessionmaker() as session:
        channels = await ChannelRepository(session).list_all()
    for channel in channels:
        if _secrets_of(channel, secret_box) is None:
            log.warning(
                "channel secrets cannot be decrypted with this BRIDGE_SECRET_KEY: restore the "
                "key they were stored with, or set them again with `channel-bridge channels "
                f"update {channel.nexus_channel_id} --webhook-secret ... --api-secret ...`",
                channel=channel.nexus_channel_id,
            )


async def channel_from_mappings(
    sessionmaker: async_sessionmaker[AsyncSession],
    secret_box: SecretBox | None,
    channel_id: str,
) -> SandboxChannel | None:
    """The simulated Nexus's view of a channel mapping: same id, same secrets."""
    async with sessionmaker() as session:
        channel = await ChannelRepository(session).get_by_nexus_channel_id(channel_id)
    found = _secrets_of(channel, secret_box) if channel is not None else None
    if found is None:
        return None
    webhooks, api = found
    return SandboxChannel(
        channel_id, webhook_secret=webhooks[0] if webhooks else "", api_secret=api
    )
