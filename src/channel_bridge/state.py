"""`State`: what the lifespan builds, typed, and how a request reaches it.

The lifespan (`app.py`) builds every long-lived component once and yields
`LifespanState`; Starlette copies that mapping into each request's scope, so a route reads
`request.state.bridge` (through `deps.py`), never an attribute patched onto the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

# Types only: importing this module (as `deps.py`, and through it the relay's routes, does)
# loads no vendor, mapping or simulator code.
if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from channel_bridge.db.models import Channel
    from channel_bridge.mappings.channel_cache import ChannelCache
    from channel_bridge.mappings.service import IntegrationChangePlanner
    from channel_bridge.ops.health import ReadinessDetail
    from channel_bridge.platforms.axp.admin import AxpAdmin
    from channel_bridge.platforms.axp.platform import AxpPlatform
    from channel_bridge.platforms.axp.schemas import AxpCallbackEvent
    from channel_bridge.platforms.genesys_cloud.schemas import OpenNormalizedMessage
    from channel_bridge.platforms.nexus.schemas import NexusWebhookMessage
    from channel_bridge.relay.destinations import DestinationRegistry
    from channel_bridge.relay.envelope import Plan
    from channel_bridge.relay.inbox import Inbox
    from channel_bridge.relay.worker import RelayWorker
    from channel_bridge.sandbox.akixi import AkixiSimulator
    from channel_bridge.sandbox.mode import Sandbox
    from channel_bridge.security import SecretBox
    from channel_bridge.settings import Settings

    # Which deliveries an inbound event becomes; pure (no I/O), so each runs before accept.
    NexusMessagePlanner = Callable[[Channel, NexusWebhookMessage, str, str], Plan]
    GenesysCloudMessagePlanner = Callable[[Channel, OpenNormalizedMessage, str], Plan]
    AxpEventPlanner = Callable[[AxpCallbackEvent], Plan]


@dataclass(slots=True)
class Planners:
    """The planners of the inbound routes, chosen by the bridge wiring (`bridge/wiring.py`)."""

    nexus_message: NexusMessagePlanner
    genesys_cloud_message: GenesysCloudMessagePlanner
    axp_event: AxpEventPlanner
    # An AXP integration created, updated or deleted (callback, admin API): the Akixi mirror.
    integration_change: IntegrationChangePlanner


@dataclass(slots=True, kw_only=True)
class State:
    """Every component a route, the CLI or a test reaches, built once by the lifespan."""

    settings: Settings
    secret_box: SecretBox | None
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Nexus and Akixi (AXP has a client of its own, with its token auth).
    http: httpx.AsyncClient
    channel_cache: ChannelCache
    destinations: DestinationRegistry
    inbox: Inbox
    # None unless BRIDGE_WORKER_ENABLED.
    worker: RelayWorker | None
    planners: Planners
    # What /readyz reports besides the database round-trip.
    readiness_detail: ReadinessDetail | None
    # None unless the BRIDGE_AXP_* settings are complete.
    axp: AxpPlatform | None
    axp_admin: AxpAdmin | None
    # Sandbox mode only: the simulators, and the in-process Akixi when no BRIDGE_AKIXI_URL.
    sandbox: Sandbox | None = None
    akixi_simulator: AkixiSimulator | None = None


class LifespanState(TypedDict):
    """What the lifespan yields; Starlette copies it into every request's `request.state`."""

    bridge: State
