"""Where every destination is registered, and the planners installed on the inbound routes.

Each destination is a name, its payload model and its handler. The platforms that are
configured decide which are registered: a process without Nexus configured registers no
Nexus destination, so its worker never claims those deliveries (another process, or this one
once configured, delivers them).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.bridge import axp_to_nexus, genesys_cloud, nexus_to_axp
from channel_bridge.bridge.context import BridgeContext
from channel_bridge.bridge.payloads import (
    AgentMessagePayload,
    AxpSendPayload,
    AxpTypingPayload,
    ConversationEventPayload,
    NexusReceiptPayload,
    NexusReceiptRecord,
)
from channel_bridge.media import MediaTransfers
from channel_bridge.ops.health import ReadinessDetail
from channel_bridge.ops.logging import get_logger
from channel_bridge.outbound import build_client
from channel_bridge.platforms.akixi.client import AkixiClient
from channel_bridge.platforms.akixi.mirror import akixi_destinations
from channel_bridge.platforms.axp.auth import AxpNotConfigured, require_axp_settings
from channel_bridge.platforms.axp.platform import AxpPlatform
from channel_bridge.platforms.axp.schemas import TypingEvent
from channel_bridge.platforms.axp.subscriptions import subscription_destination
from channel_bridge.platforms.genesys_cloud.client import (
    GenesysCloudClient,
    api_base_url,
    build_genesys_cloud_http,
    genesys_cloud_configured,
)
from channel_bridge.platforms.nexus.client import NexusClient
from channel_bridge.platforms.nexus.fields import FieldMap
from channel_bridge.relay.circuits import Circuit
from channel_bridge.relay.destinations import DeadLetterHook, DestinationRegistry
from channel_bridge.settings import Settings

log = get_logger(__name__)


def install_planners(app: FastAPI, settings: Settings) -> None:
    """Inbound events always queue their deliveries, even before an upstream is configured:
    they wait in the outbox until a process with that upstream delivers them."""
    app.state.nexus_message_planner = nexus_to_axp.plan_nexus_message
    app.state.genesys_cloud_message_planner = genesys_cloud.plan_genesys_cloud_message
    # Genesys Cloud takes typing (read); Nexus typing stays off unless enabled (the handler
    # skips it for Nexus channels).
    app.state.axp_event_planner = axp_to_nexus.make_axp_event_planner(
        typing_enabled=settings.nexus_typing_enabled or genesys_cloud_configured(settings)
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


def register_destinations(
    app: FastAPI,
    settings: Settings,
    *,
    axp: AxpPlatform | None,
    akixi: tuple[AkixiClient, Settings] | None,
    nexus_http: httpx.AsyncClient | None = None,
    genesys_cloud_transport: httpx.AsyncBaseTransport | None = None,
) -> BridgeContext | None:
    """Every destination this process can deliver to; the bridge context when it relays."""
    registry: DestinationRegistry = app.state.destinations
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
    gaps = relaying_gaps(settings, secret_box=app.state.secret_box is not None)
    if gaps or axp is None:
        log.warning("bridge relaying is off until configured", reasons=gaps)
        app.state.readiness_detail = _with_relaying_off(app.state.readiness_detail, gaps)
        return None
    bridge = BridgeContext(
        settings=settings,
        sessionmaker=app.state.sessionmaker,
        secret_box=app.state.secret_box,
        channels=app.state.channel_cache,
        axp=axp,
        # One media budget per process, both directions.
        nexus=NexusClient(nexus_http or app.state.http, settings, transfers=axp.media.transfers),
        nexus_fields=FieldMap.from_settings(settings),
        genesys_cloud=_genesys_cloud_client(
            app, settings, genesys_cloud_transport, transfers=axp.media.transfers
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
        nexus_to_axp.SEND_DESTINATION: genesys_cloud.report_dead_send,
    }
    # (name, handler, payload model, circuit: None for what only writes our own database)
    for name, handler, payload, upstream in (
        (nexus_to_axp.SEND_DESTINATION, nexus_to_axp.deliver_message, AxpSendPayload, axp_circuit),
        (
            nexus_to_axp.TYPING_DESTINATION,
            nexus_to_axp.deliver_typing,
            AxpTypingPayload,
            axp_circuit,
        ),
        (
            nexus_to_axp.RECEIPT_DESTINATION,
            nexus_to_axp.record_nexus_receipt,
            NexusReceiptRecord,
            None,
        ),
        (
            axp_to_nexus.MESSAGE_DESTINATION,
            axp_to_nexus.deliver_agent_message,
            AgentMessagePayload,
            nexus_circuit,
        ),
        (
            axp_to_nexus.RECEIPT_DESTINATION,
            axp_to_nexus.deliver_receipt,
            NexusReceiptPayload,
            nexus_circuit,
        ),
        (axp_to_nexus.TYPING_DESTINATION, axp_to_nexus.deliver_typing, TypingEvent, nexus_circuit),
        # A genesys-cloud channel's deliveries: the same handlers, Genesys Cloud's circuit
        # (its rate limit, 300 requests a minute per OAuth client, is this circuit's limit).
        (
            genesys_cloud.SEND_DESTINATION,
            axp_to_nexus.deliver_agent_message,
            AgentMessagePayload,
            genesys_cloud_circuit,
        ),
        (
            genesys_cloud.RECEIPT_DESTINATION,
            axp_to_nexus.deliver_receipt,
            NexusReceiptPayload,
            genesys_cloud_circuit,
        ),
        (
            genesys_cloud.TYPING_DESTINATION,
            axp_to_nexus.deliver_typing,
            TypingEvent,
            genesys_cloud_circuit,
        ),
        (
            axp_to_nexus.CONVERSATION_DESTINATION,
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
    app.state.bridge = bridge
    return bridge


def _genesys_cloud_client(
    app: FastAPI,
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    *,
    transfers: MediaTransfers,
) -> GenesysCloudClient | None:
    """The Open Messaging client when configured; its HTTP clients close with the app."""
    if not genesys_cloud_configured(settings):
        return None
    http = build_genesys_cloud_http(settings, transport=transport)
    app.state.exit_stack.push_async_callback(http.aclose)
    api_is_http = api_base_url(settings).startswith("http://")
    media_http: httpx.AsyncClient = app.state.http
    if transport is not None:
        # The sandbox serves attachments from its simulator, in process.
        media_http = build_client(settings, transport=transport)
        app.state.exit_stack.push_async_callback(media_http.aclose)
    return GenesysCloudClient(
        http,
        media_http=media_http,
        media_max_bytes=settings.axp_media_max_bytes,
        # Plain-http attachment URLs only where the API itself is plain http (the sandbox).
        allow_http_media=api_is_http,
        # One media budget per process: Genesys attachments share it with the other platforms.
        transfers=transfers,
    )
