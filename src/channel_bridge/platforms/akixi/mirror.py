"""Mirror AXP messaging integrations as Akixi Omnichannel Integration entries.

Deliveries (queued by the integration service, partition key `akixi:<integration_id>`):
    akixi.upsert  AkixiUpsertPayload {integration_id, name, account_id, channel_provider_id,
                  created, changed: [...]}
    akixi.delete  AkixiDeletePayload {integration_id}

created -> OmnichannelIntAdd (12000 "exists" -> OmnichannelIntChange with the same values)
updated -> OmnichannelIntChange with only the changed properties (12001/12002 -> Add)
deleted -> OmnichannelIntChange CommsEnabled=False, then OmnichannelIntDelete (not found = done)

Each step is idempotent, so a retried or replayed delivery converges on the same state.
The same functions repair drift for `channel-bridge akixi sync`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.akixi import schemas as ax
from channel_bridge.platforms.akixi.client import AkixiClient
from channel_bridge.platforms.akixi.errors import (
    AkixiConfigError,
    AkixiEntryExists,
    AkixiEntryNotFound,
)
from channel_bridge.platforms.akixi.schemas import OmnichannelEntry, Payload, akixi_bool
from channel_bridge.relay.destinations import DeliveryContext, Destination
from channel_bridge.settings import Settings

log = get_logger(__name__)

UPSERT_DESTINATION = "akixi.upsert"
DELETE_DESTINATION = "akixi.delete"
# Markers in `changed` (or a `created` flag) that mean "the integration is new".
CREATED_MARKERS = frozenset({"created", "create", "*"})


def unique_id_for(settings: Settings, integration_id: str) -> str:
    """Our deterministic Akixi UniqueID: prefix + AXP integration id."""
    return f"{settings.akixi_unique_id_prefix}{integration_id}"


def description_for(integration_id: str, name: str | None) -> str:
    # Akixi shows Description in its reports; the id stands in for a nameless integration.
    return name.strip() if name and name.strip() else integration_id


def full_entry(
    client: AkixiClient, settings: Settings, integration_id: str, name: str | None
) -> Payload:
    """Every property an Add sends for one integration, in the seed's order."""
    return {
        ax.UNIQUE_ID: unique_id_for(settings, integration_id),
        **client.partition_scope(),
        ax.INTEGRATION_TYPE: settings.akixi_integration_type,
        ax.DESCRIPTION: description_for(integration_id, name),
        ax.API_COMMUNICATION_SETTINGS: {ax.COMMS_ENABLED: akixi_bool(True)},
    }


def changeable_entry(integration_id: str, name: str | None) -> Payload:
    """What a Change sets to bring an existing entry fully in line (no read-only properties)."""
    return {
        ax.DESCRIPTION: description_for(integration_id, name),
        ax.API_COMMUNICATION_SETTINGS: {ax.COMMS_ENABLED: akixi_bool(True)},
    }


def changed_properties(changed: Iterable[str], integration_id: str, name: str | None) -> Payload:
    """Only the Akixi properties behind the changed fields."""
    fields = set(changed)
    properties: Payload = {}
    if "name" in fields:
        properties[ax.DESCRIPTION] = description_for(integration_id, name)
    if "status" in fields:
        # An upsert is only queued for an active integration: re-enable its entry.
        properties[ax.API_COMMUNICATION_SETTINGS] = {ax.COMMS_ENABLED: akixi_bool(True)}
    return properties


async def mirror_upsert(
    client: AkixiClient,
    settings: Settings,
    *,
    integration_id: str,
    name: str | None,
    created: bool,
    changed: Iterable[str] = (),
) -> dict[str, Any]:
    """Create or update the entry of one integration; the operations performed."""
    unique_id = unique_id_for(settings, integration_id)
    operations: list[str] = []
    if created:
        try:
            operations.append(ax.OMNICHANNEL_ADD)
            await client.omnichannel_add(full_entry(client, settings, integration_id, name))
            return {"unique_id": unique_id, "operations": operations}
        except AkixiEntryExists:
            # A retry after a lost response, or an entry left from before: make it match.
            log.info("akixi entry exists; changing it instead", unique_id=unique_id)
            operations.append(ax.OMNICHANNEL_CHANGE)
            await client.omnichannel_change(unique_id, changeable_entry(integration_id, name))
            return {"unique_id": unique_id, "operations": operations, "existed": True}
    properties = changed_properties(changed, integration_id, name)
    if not properties:
        return {"unique_id": unique_id, "operations": operations,
                "skipped": "no mirrored property changed"}
    try:
        operations.append(ax.OMNICHANNEL_CHANGE)
        await client.omnichannel_change(unique_id, properties)
    except AkixiEntryNotFound:
        # Akixi was configured after the integration was created, or the entry was removed there.
        log.info("akixi entry missing on change; adding it", unique_id=unique_id)
        operations.append(ax.OMNICHANNEL_ADD)
        await client.omnichannel_add(full_entry(client, settings, integration_id, name))
    return {"unique_id": unique_id, "operations": operations}


async def mirror_delete(
    client: AkixiClient, settings: Settings, *, integration_id: str | None = None,
    unique_id: str | None = None,
) -> dict[str, Any]:
    """Disable then delete the entry (Akixi refuses to delete an enabled one); gone = done."""
    if unique_id is None:
        if integration_id is None:
            raise ValueError("integration_id or unique_id is required")
        unique_id = unique_id_for(settings, integration_id)
    operations = [ax.OMNICHANNEL_CHANGE]
    try:
        await client.omnichannel_change(
            unique_id, {ax.API_COMMUNICATION_SETTINGS: {ax.COMMS_ENABLED: akixi_bool(False)}}
        )
        operations.append(ax.OMNICHANNEL_DELETE)
        await client.omnichannel_delete(unique_id)
    except AkixiEntryNotFound:
        return {"unique_id": unique_id, "operations": operations, "already_absent": True}
    return {"unique_id": unique_id, "operations": operations}


class AkixiUpsertPayload(BaseModel):
    """`akixi.upsert`: create or change the entry of one integration."""

    model_config = ConfigDict(extra="ignore")

    integration_id: str = Field(min_length=1)
    name: str | None = None
    account_id: str | None = None
    channel_provider_id: str | None = None
    # The integration service sends an explicit flag (and "action": created|updated).
    created: bool | None = None
    action: str | None = None
    changed: list[str] | None = None

    @property
    def is_created(self) -> bool:
        if self.created is not None:
            return self.created
        if self.action in ("created", "updated"):
            return self.action == "created"
        if self.changed is None:
            return True  # no change list: treat as a full (idempotent) create
        return bool(CREATED_MARKERS & {item.lower() for item in self.changed})


class AkixiDeletePayload(BaseModel):
    """`akixi.delete`: remove the entry of one integration."""

    model_config = ConfigDict(extra="ignore")

    integration_id: str = Field(min_length=1)


def akixi_destinations(client: AkixiClient, settings: Settings) -> list[Destination]:
    """`akixi.upsert` and `akixi.delete`; Akixi errors propagate as relay errors."""
    try:
        client.partition_scope()
    except AkixiConfigError as exc:
        # Every delivery would go dead; say so at startup rather than per delivery.
        log.warning("akixi mirror cannot create entries", reason=str(exc))

    async def upsert(ctx: DeliveryContext[AkixiUpsertPayload]) -> dict[str, Any]:
        payload = ctx.payload
        return await mirror_upsert(
            client, settings,
            integration_id=payload.integration_id,
            name=payload.name,
            created=payload.is_created,
            changed=payload.changed or [],
        )

    async def delete(ctx: DeliveryContext[AkixiDeletePayload]) -> dict[str, Any]:
        return await mirror_delete(client, settings, integration_id=ctx.payload.integration_id)

    return [
        Destination(UPSERT_DESTINATION, upsert, AkixiUpsertPayload),
        Destination(DELETE_DESTINATION, delete, AkixiDeletePayload),
    ]


# --- drift between our integrations and Akixi's entries (channel-bridge akixi sync) --------


@dataclass(frozen=True)
class IntegrationState:
    """What sync needs to know about one of our integrations."""

    integration_id: str
    name: str | None
    active: bool


FindingKind = Literal["missing", "orphaned", "drifted"]


@dataclass(frozen=True)
class SyncFinding:
    kind: FindingKind
    unique_id: str
    integration_id: str | None
    detail: str
    # For drift: the properties a Change would set.
    changes: Payload = field(default_factory=dict)


def plan_sync(
    settings: Settings,
    integrations: Sequence[IntegrationState],
    entries: Sequence[OmnichannelEntry],
) -> list[SyncFinding]:
    """Missing, orphaned and drifted entries, sorted by UniqueID."""
    prefix = settings.akixi_unique_id_prefix
    ours = {unique_id_for(settings, item.integration_id): item for item in integrations}
    theirs = {
        entry.unique_id: entry
        for entry in entries
        if entry.unique_id and entry.unique_id.startswith(prefix)
    }
    findings: list[SyncFinding] = []
    for unique_id, integration in ours.items():
        if not integration.active:
            continue
        entry = theirs.get(unique_id)
        if entry is None:
            findings.append(SyncFinding("missing", unique_id, integration.integration_id,
                                        "active integration has no Akixi entry"))
            continue
        expected = description_for(integration.integration_id, integration.name)
        changes: Payload = {}
        notes = []
        if entry.description != expected:
            changes[ax.DESCRIPTION] = expected
            notes.append(f"Description {entry.description!r} != {expected!r}")
        if entry.comms_enabled is False:
            changes[ax.API_COMMUNICATION_SETTINGS] = {ax.COMMS_ENABLED: akixi_bool(True)}
            notes.append("CommsEnabled False != True")
        if changes:
            findings.append(SyncFinding("drifted", unique_id, integration.integration_id,
                                        "; ".join(notes), changes))
    for unique_id in theirs:
        owner = ours.get(unique_id)
        if owner is None:
            findings.append(SyncFinding("orphaned", unique_id, None,
                                        "entry with our prefix but no such integration"))
        elif not owner.active:
            findings.append(SyncFinding("orphaned", unique_id, owner.integration_id,
                                        "integration is deleted"))
    return sorted(findings, key=lambda finding: (finding.unique_id, finding.kind))


async def repair(
    client: AkixiClient,
    settings: Settings,
    finding: SyncFinding,
    integrations: Sequence[IntegrationState],
) -> dict[str, Any]:
    """Fix one finding with the same calls the mirror deliveries make."""
    if finding.kind == "orphaned":
        return await mirror_delete(client, settings, unique_id=finding.unique_id)
    integration = next(
        item for item in integrations if item.integration_id == finding.integration_id
    )
    if finding.kind == "missing":
        return await mirror_upsert(client, settings, integration_id=integration.integration_id,
                                   name=integration.name, created=True)
    await client.omnichannel_change(finding.unique_id, finding.changes)
    return {"unique_id": finding.unique_id, "operations": [ax.OMNICHANNEL_CHANGE]}
