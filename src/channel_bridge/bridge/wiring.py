"""Where every destination is registered, and the planners installed on the inbound routes.

Each destination is a name, its payload model and its handler. The platforms that are
configured decide which are registered: a process without Nexus configured registers no
Nexus destination, so its worker never claims those deliveries (another process, or this one
once configured, delivers them).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.bridge import axp_to_nexus, genesys_cloud, nexus_to_axp
from channel_bridge.bridge.context import BridgeContext
from channel_bridge.bridge.destinations import BridgeDestination
from channel_bridge.bridge.integrations import IntegrationDeliveries
from channel_bridge.bridge.payloads import (
    AgentMessagePayload,
    AxpSendPayload,
    AxpTypingPayload,
    ConversationEventPayload,
    NexusReceiptPayload,
    NexusReceiptRecord,
)
from channel_bridge.mappings.channel_cache import ChannelCache
from channel_bridge.media import MediaTransfers
from channel_bridge.ops.health import ReadinessDetail
from channel_bridge.ops.logging import get_logger
from channel_bridge.outbound import build_client
from channel_bridge.platforms.akixi.client import AkixiClient
from channel_bridge.platforms.akixi.mirror import akixi_destinations
from channel_bridge.platforms.axp.auth import AxpNotConfigured, require_axp_settings
from channel_bridge.platforms.axp.destinations import AxpDestination
from channel_bridge.platforms.axp.platform import AxpPlatform
from channel_bridge.platforms.axp.schemas import TypingEvent
from channel_bridge.platforms.axp.subscriptions import subscription_destination
from channel_bridge.platforms.genesys_cloud.client import (
    GenesysCloudClient,
    api_base_url,
    build_genesys_cloud_http,
    genesys_cloud_configured,
)
from channel_bridge.platforms.genesys_cloud.destinations import GenesysCloudDestination
from channel_bridge.platforms.nexus.client import NexusClient
from channel_bridge.platforms.nexus.destinations import NexusDestination
from channel_bridge.platforms.nexus.fields import FieldMap
from channel_bridge.relay.circuits import Circuit
from channel_bridge.relay.destinations import DeadLetterHook, DestinationRegistry
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings
from channel_bridge.state import Planners

log = get_logger(__name__)


def planners(settings: Settings) -> Planners:
    """Inbound events always queue their deliveries, even before an upstream is configured:
    they wait in the outbox until a process with that upstream delivers them."""
    return Planners(
        nexus_message=nexus_to_axp.plan_nexus_message,
        genesys_cloud_message=genesys_cloud.plan_genesys_cloud_message,
        # Genesys Cloud takes typing (read); Nexus typing stays off unless enabled (the
        # handler skips it for Nexus channels).
        axp_event=axp_to_nexus.make_axp_event_planner(
            typing_enabled=settings.nexus_typing_enabled or genesys_cloud_configured(settings)
        ),
        integration_change=IntegrationDeliveries(),
    )


def relaying_gaps(settings: Settings, *, secret_box: bool = True) -> list[str]:
    """Why this process cannot relay between AXP and a Genesys backend (Nexus or Genesys
    Cloud), one line per missing setting."""
    gaps = []
    try:
        require_axp_settings(settings)
    except AxpNotConfigured as exc:
        gaps.append(str(exc))
    if not settings.nexus_base_url and not genesys_cloud_configured(settings):
        gaps.append(
            "BRIDGE_NEXUS_BASE_URL is not set: Nexus is not configured, nor is Genesys Cloud "
            "(BRIDGE_GENESYS_CLOUD_*)"
        )
    if not secret_box:
        gaps.append("BRIDGE_SECRET_KEY is not set: channel secrets cannot be read")
    return gaps


def _with_relaying_off(detail: ReadinessDetail | None, gaps: list[str]) -> ReadinessDetail:
    """`/readyz` says relaying is off and why; informational, the pod stays ready (webhooks are
    still stored, and a configured process delivers them)."""

    async def relaying_off(session: AsyncSession) -> dict[str, Any]:
        relaying = {"relaying": {"status": "off", "reasons": gaps}}
        try:
            extra = await detail(session) if detail is not None else {}
        except Exception as exc:  # known without the database, so said even without it
            log.warning("readiness detail unavailable", error=type(exc).__name__)
            extra = {}
        return {**extra, **relaying}

    return relaying_off


def circuit(settings: Settings, name: str, *identity: str | None) -> Circuit:
    """The circuit of one upstream: its breaker row is keyed by the upstream and the account."""
    limits = settings.circuit_limits.get(name)
    return Circuit(
        name=name,
        key=":".join([name, *(part or "-" for part in identity)]),
        max_in_flight=limits.max_in_flight if limits else None,
        rate_per_s=limits.rate_per_s if limits else None,
    )


@dataclass(slots=True)
class Wiring:
    """What registering the destinations leaves for the lifespan."""

    # None when relaying is off (see relaying_gaps).
    context: BridgeContext | None
    readiness_detail: ReadinessDetail | None


def register_destinations(
    registry: DestinationRegistry,
    settings: Settings,
    stack: AsyncExitStack,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    secret_box: SecretBox | None,
    channels: ChannelCache,
    http: httpx.AsyncClient,
    readiness_detail: ReadinessDetail | None,
    axp: AxpPlatform | None,
    akixi: tuple[AkixiClient, Settings] | None,
    nexus_http: httpx.AsyncClient | None = None,
    genesys_cloud_transport: httpx.AsyncBaseTransport | None = None,
) -> Wiring:
    """Every destination this process can deliver to; the bridge context when it relays.

    HTTP clients built here close with `stack`; `http` is the process's shared client.
    """
    axp_circuit = circuit(settings, "axp", settings.axp_base_url, settings.axp_account_id)
    if axp is not None:
        subscription = subscription_destination(
            axp.subscriptions, callback_url=axp.callback_url, event_types=axp.event_types
        )
        registry.add(replace(subscription, circuit=axp_circuit))
    if akixi is not None:
        akixi_circuit = circuit(settings, "akixi", akixi[1].akixi_url)
        for destination in akixi_destinations(*akixi):
            registry.add(replace(destination, circuit=akixi_circuit))
    gaps = relaying_gaps(settings, secret_box=secret_box is not None)
    if gaps or axp is None or secret_box is None:
        log.warning("bridge relaying is off until configured", reasons=gaps)
        return Wiring(context=None, readiness_detail=_with_relaying_off(readiness_detail, gaps))
    bridge = BridgeContext(
        settings=settings,
        sessionmaker=sessionmaker,
        secret_box=secret_box,
        channels=channels,
        axp=axp,
        # One media budget per process, both directions.
        nexus=NexusClient(nexus_http or http, settings, transfers=axp.media.transfers),
        nexus_fields=FieldMap.from_settings(settings),
        genesys_cloud=_genesys_cloud_client(
            settings, stack, http, genesys_cloud_transport, transfers=axp.media.transfers
        ),
    )
    genesys_cloud_circuit = circuit(
        settings,
        "genesys-cloud",
        api_base_url(settings),
        settings.genesys_cloud_client_id,
    )
    nexus_circuit = circuit(settings, "nexus", settings.nexus_base_url, settings.nexus_ccid)
    # What a dead delivery leaves behind: the sender hears that its message failed.
    dead_letter_hooks: dict[str, DeadLetterHook] = {
        AxpDestination.SEND_MESSAGE: genesys_cloud.report_dead_send,
    }
    # (name, handler, payload model, circuit: None for what only writes our own database)
    for name, handler, payload, upstream in (
        (AxpDestination.SEND_MESSAGE, nexus_to_axp.deliver_message, AxpSendPayload, axp_circuit),
        (AxpDestination.TYPING, nexus_to_axp.deliver_typing, AxpTypingPayload, axp_circuit),
        (
            BridgeDestination.NEXUS_RECEIPT,
            nexus_to_axp.record_nexus_receipt,
            NexusReceiptRecord,
            None,
        ),
        (
            NexusDestination.SEND_MESSAGE,
            axp_to_nexus.deliver_agent_message,
            AgentMessagePayload,
            nexus_circuit,
        ),
        (
            NexusDestination.RECEIPT,
            axp_to_nexus.deliver_receipt,
            NexusReceiptPayload,
            nexus_circuit,
        ),
        (NexusDestination.TYPING, axp_to_nexus.deliver_typing, TypingEvent, nexus_circuit),
        # A genesys-cloud channel's deliveries: the same handlers, Genesys Cloud's circuit
        # (its rate limit, 300 requests a minute per OAuth client, is this circuit's limit).
        (
            GenesysCloudDestination.SEND_MESSAGE,
            axp_to_nexus.deliver_agent_message,
            AgentMessagePayload,
            genesys_cloud_circuit,
        ),
        (
            GenesysCloudDestination.RECEIPT,
            axp_to_nexus.deliver_receipt,
            NexusReceiptPayload,
            genesys_cloud_circuit,
        ),
        (
            GenesysCloudDestination.TYPING,
            axp_to_nexus.deliver_typing,
            TypingEvent,
            genesys_cloud_circuit,
        ),
        (
            BridgeDestination.CONVERSATION_EVENT,
            axp_to_nexus.deliver_conversation_event,
            ConversationEventPayload,
            None,
        ),
    ):
        registry.register(
            name,
            partial(handler, bridge),  # type: ignore[arg-type]
            payload=payload,
            circuit=upstream,
            on_dead=dead_letter_hooks.get(name),
        )
    return Wiring(context=bridge, readiness_detail=readiness_detail)


def _genesys_cloud_client(
    settings: Settings,
    stack: AsyncExitStack,
    http: httpx.AsyncClient,
    transport: httpx.AsyncBaseTransport | None,
    *,
    transfers: MediaTransfers,
) -> GenesysCloudClient | None:
    """The Open Messaging client when configured; its HTTP clients close with the app."""
    if not genesys_cloud_configured(settings):
        return None
    api_http = build_genesys_cloud_http(settings, transport=transport)
    stack.push_async_callback(api_http.aclose)
    api_is_http = api_base_url(settings).startswith("http://")
    media_http = http
    if transport is not None:
        # The sandbox serves attachments from its simulator, in process.
        media_http = build_client(settings, transport=transport)
        stack.push_async_callback(media_http.aclose)
    return GenesysCloudClient(
        api_http,
        media_http=media_http,
        media_max_bytes=settings.axp_media_max_bytes,
        # Plain-http attachment URLs only where the API itself is plain http (the sandbox).
        allow_http_media=api_is_http,
        # One media budget per process: Genesys attachments share it with the other platforms.
        transfers=transfers,
    )
