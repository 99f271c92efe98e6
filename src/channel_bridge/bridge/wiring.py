"""Install the bridge into a running app: planners on the inbound routes, delivery handlers."""

from __future__ import annotations

from functools import partial

import httpx
from fastapi import FastAPI

from channel_bridge.bridge import axp_to_nexus, nexus_to_axp
from channel_bridge.bridge.context import BridgeContext
from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.nexus.client import NexusClient
from channel_bridge.platforms.nexus.fields import FieldMap
from channel_bridge.settings import Settings

log = get_logger(__name__)


def install_planners(app: FastAPI, settings: Settings) -> None:
    """Inbound events always queue their deliveries, even before an upstream is configured:
    they wait in the outbox until a process with that upstream delivers them."""
    app.state.nexus_message_planner = nexus_to_axp.plan_nexus_message
    app.state.axp_event_planner = axp_to_nexus.make_axp_event_planner(
        typing_enabled=settings.nexus_typing_enabled
    )


def install_handlers(
    app: FastAPI, settings: Settings, *, nexus_http: httpx.AsyncClient | None = None
) -> BridgeContext | None:
    """Register the cross-platform destinations when both AXP and Nexus are configured."""
    axp = getattr(app.state, "axp", None)
    missing = [
        name
        for name, ok in (
            ("AXP", axp is not None),
            ("Nexus", bool(settings.nexus_base_url)),
            ("BRIDGE_SECRET_KEY", app.state.secret_box is not None),
        )
        if not ok
    ]
    if missing or axp is None:
        log.warning("bridge relaying is off until configured", missing=missing)
        return None
    bridge = BridgeContext(
        settings=settings,
        sessionmaker=app.state.sessionmaker,
        secret_box=app.state.secret_box,
        axp=axp,
        nexus=NexusClient(nexus_http or app.state.http, settings),
        nexus_fields=FieldMap.from_settings(settings),
    )
    registry = app.state.destinations
    registry.register(nexus_to_axp.SEND_DESTINATION, partial(nexus_to_axp.deliver_message, bridge))
    registry.register(nexus_to_axp.TYPING_DESTINATION, partial(nexus_to_axp.deliver_typing, bridge))
    registry.register(
        nexus_to_axp.RECEIPT_DESTINATION, partial(nexus_to_axp.record_nexus_receipt, bridge)
    )
    registry.register(
        axp_to_nexus.MESSAGE_DESTINATION, partial(axp_to_nexus.deliver_agent_message, bridge)
    )
    registry.register(
        axp_to_nexus.RECEIPT_DESTINATION, partial(axp_to_nexus.deliver_receipt, bridge)
    )
    registry.register(axp_to_nexus.TYPING_DESTINATION, partial(axp_to_nexus.deliver_typing, bridge))
    registry.register(
        axp_to_nexus.CONVERSATION_DESTINATION,
        partial(axp_to_nexus.deliver_conversation_event, bridge),
    )
    app.state.bridge = bridge
    return bridge
