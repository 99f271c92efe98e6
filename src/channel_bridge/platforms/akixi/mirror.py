"""Mirror AXP messaging integrations as Akixi Omnichannel Integration entries.

Deliveries (queued by the integration service, partition key `akixi:<integration_id>`):
    akixi.upsert  AkixiUpsertPayload {integration_id, name, account_id, channel_provider_id,
                  created, changed: [...]}
    akixi.delete  AkixiDeletePayload {integration_id, name}

Which entry is ours, and what it should hold, is `entries.py`. Two ways to reach it:
- `BRIDGE_AKIXI_SEND_UNIQUE_ID` on: our UniqueID is prefix + integration id.
  created -> Add (12000 "exists" -> Change); updated -> Change (12001/12002 -> Add).
- off (the default, seed 001): Akixi assigns the UniqueID, so each delivery first Lists our
  partition and finds the entry by its Description tag. created -> Add unless found (then
  Change); updated -> Change the one found, else Add.
deleted -> Change CommsEnabled=False, then Delete (not found = done).
Every Change sends the seed's full set of properties, not only the changed ones.

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
from channel_bridge.platforms.akixi.destinations import AkixiDestination
from channel_bridge.platforms.akixi.entries import (
    EntryNaming,
    add_properties,
    change_properties,
)
from channel_bridge.platforms.akixi.errors import (
    AkixiConfigError,
    AkixiEntryExists,
    AkixiEntryNotFound,
    AkixiEntryUnreachable,
)
from channel_bridge.platforms.akixi.schemas import OmnichannelEntry, Payload
from channel_bridge.relay.destinations import DeliveryContext, Destination
from channel_bridge.settings import Settings

log = get_logger(__name__)

# Markers in `changed` (or a `created` flag) that mean "the integration is new".
CREATED_MARKERS = frozenset({"created", "create", "*"})
# Integration fields Akixi holds: the name is the Description, the status CommsEnabled.
MIRRORED_FIELDS = frozenset({"name", "status"})


async def find_entry(
    client: AkixiClient, settings: Settings, integration_id: str
) -> OmnichannelEntry | None:
    """Our entry for this integration in Akixi's List (the first, if there are several)."""
    naming = EntryNaming.from_settings(settings)
    found = [
        entry
        for entry in await client.omnichannel_list()
        if naming.integration_id_of(entry) == integration_id
    ]
    if len(found) > 1:
        log.warning(
            "akixi has several entries for one integration; `akixi sync` lists them",
            integration_id=integration_id,
            entries=len(found),
        )
    # One whose UniqueID came back can be changed; prefer it.
    return next((entry for entry in found if entry.unique_id), found[0] if found else None)


def _reachable(entry: OmnichannelEntry, integration_id: str) -> str:
    if entry.unique_id:
        return entry.unique_id
    raise AkixiEntryUnreachable(
        f"Akixi's OmnichannelIntList did not return the UniqueID of the entry of integration "
        f"{integration_id}, so it cannot be changed or deleted; set BRIDGE_AKIXI_SEND_UNIQUE_ID "
        "if this account may set UniqueIDs, or change the entry in the Akixi web app",
        operation=ax.OMNICHANNEL_LIST,
    )


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
    naming = EntryNaming.from_settings(settings)
    scope = client.partition_scope()
    full = change_properties(
        settings, scope, description=naming.description_for(integration_id, name)
    )
    if not created and not MIRRORED_FIELDS & set(changed):
        return {
            "unique_id": naming.unique_id_for(integration_id),
            "operations": [],
            "skipped": "no mirrored property changed",
        }
    if naming.send_unique_id:
        unique_id = naming.key_for(integration_id)
        if created:
            try:
                await client.omnichannel_add(add_properties(settings, scope, integration_id, name))
                return {"unique_id": unique_id, "operations": [ax.OMNICHANNEL_ADD]}
            except AkixiEntryExists:
                # A retry after a lost response, or an entry left from before: make it match.
                log.info("akixi entry exists; changing it instead", unique_id=unique_id)
                await client.omnichannel_change(unique_id, full)
                return {
                    "unique_id": unique_id,
                    "existed": True,
                    "operations": [ax.OMNICHANNEL_ADD, ax.OMNICHANNEL_CHANGE],
                }
        try:
            await client.omnichannel_change(unique_id, full)
            return {"unique_id": unique_id, "operations": [ax.OMNICHANNEL_CHANGE]}
        except AkixiEntryNotFound:
            # Akixi was configured after the integration was created, or the entry was removed.
            log.info("akixi entry missing on change; adding it", unique_id=unique_id)
            await client.omnichannel_add(add_properties(settings, scope, integration_id, name))
            return {
                "unique_id": unique_id,
                "operations": [ax.OMNICHANNEL_CHANGE, ax.OMNICHANNEL_ADD],
            }

    entry = await find_entry(client, settings, integration_id)
    if entry is None:
        await client.omnichannel_add(add_properties(settings, scope, integration_id, name))
        return {"unique_id": None, "operations": [ax.OMNICHANNEL_LIST, ax.OMNICHANNEL_ADD]}
    if created and not entry.unique_id:
        # A retry after a lost Add response: the entry is there, which is what was asked.
        return {
            "unique_id": None,
            "existed": True,
            "operations": [ax.OMNICHANNEL_LIST],
            "unchanged": "Akixi's List gave no UniqueID, so the entry was left as it is",
        }
    unique_id = _reachable(entry, integration_id)
    await client.omnichannel_change(unique_id, full)
    return {
        "unique_id": unique_id,
        "existed": created,
        "operations": [ax.OMNICHANNEL_LIST, ax.OMNICHANNEL_CHANGE],
    }


async def mirror_delete(
    client: AkixiClient,
    settings: Settings,
    *,
    integration_id: str | None = None,
    name: str | None = None,
    entry: OmnichannelEntry | None = None,
) -> dict[str, Any]:
    """Disable then delete the entry (Akixi refuses to delete an enabled one); gone = done.

    Give the integration (its entry is found as the upsert finds it) or the entry itself.
    """
    naming = EntryNaming.from_settings(settings)
    operations: list[str] = []
    if entry is None and integration_id is None:
        raise ValueError("integration_id or entry is required")
    if entry is None and naming.send_unique_id:
        assert integration_id is not None
        unique_id = naming.key_for(integration_id)
        description = naming.description_for(integration_id, name)
    else:
        if entry is None:
            assert integration_id is not None
            operations.append(ax.OMNICHANNEL_LIST)
            entry = await find_entry(client, settings, integration_id)
            if entry is None:
                return {"unique_id": None, "operations": operations, "already_absent": True}
        unique_id = _reachable(entry, integration_id or entry.description or "?")
        description = entry.description or naming.description_for(integration_id or unique_id, name)
    disable = change_properties(
        settings, client.partition_scope(), description=description, comms_enabled=False
    )
    operations.append(ax.OMNICHANNEL_CHANGE)
    try:
        await client.omnichannel_change(unique_id, disable)
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
    # The Description of the disabling Change (the service sends the integration's name).
    name: str | None = None


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
            client,
            settings,
            integration_id=payload.integration_id,
            name=payload.name,
            created=payload.is_created,
            changed=payload.changed or [],
        )

    async def delete(ctx: DeliveryContext[AkixiDeletePayload]) -> dict[str, Any]:
        payload = ctx.payload
        return await mirror_delete(
            client, settings, integration_id=payload.integration_id, name=payload.name
        )

    return [
        Destination(AkixiDestination.UPSERT, upsert, AkixiUpsertPayload),
        Destination(AkixiDestination.DELETE, delete, AkixiDeletePayload),
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
    # None when Akixi assigns UniqueIDs and its List did not return this entry's.
    unique_id: str | None
    integration_id: str | None
    detail: str
    # For drift: the properties a Change would set. For an orphan: the entry itself.
    changes: Payload = field(default_factory=dict)
    entry: OmnichannelEntry | None = None


def plan_sync(
    settings: Settings,
    integrations: Sequence[IntegrationState],
    entries: Sequence[OmnichannelEntry],
    *,
    scope: Payload | None = None,
) -> list[SyncFinding]:
    """Missing, orphaned and drifted entries, sorted by integration then UniqueID.

    Ours are the entries `EntryNaming` recognises (Description tag or UniqueID prefix); every
    other entry is never reported, so never touched.
    """
    naming = EntryNaming.from_settings(settings)
    known = {item.integration_id: item for item in integrations}
    theirs: dict[str, list[OmnichannelEntry]] = {}
    for entry in entries:
        integration_id = naming.integration_id_of(entry)
        if integration_id is not None:
            theirs.setdefault(integration_id, []).append(entry)
    expected_comms = settings.akixi_comms_enabled_value
    findings: list[SyncFinding] = []
    for integration in integrations:
        if not integration.active:
            continue
        found = theirs.get(integration.integration_id)
        if not found:
            findings.append(
                SyncFinding(
                    "missing",
                    naming.unique_id_for(integration.integration_id),
                    integration.integration_id,
                    "active integration has no Akixi entry",
                )
            )
            continue
        entry = found[0]
        expected = naming.description_for(integration.integration_id, integration.name)
        notes = []
        if entry.description != expected:
            notes.append(f"Description {entry.description!r} != {expected!r}")
        if entry.comms_enabled is not None and entry.comms_enabled != expected_comms:
            notes.append(
                f"CommsEnabled {ax.akixi_bool(entry.comms_enabled)} != "
                f"{ax.akixi_bool(expected_comms)}"
            )
        if notes:
            changes = change_properties(settings, scope or {}, description=expected)
            findings.append(
                SyncFinding(
                    "drifted",
                    entry.unique_id,
                    integration.integration_id,
                    "; ".join(notes),
                    changes,
                    entry,
                )
            )
    for integration_id, found in theirs.items():
        owner = known.get(integration_id)
        extra = found if owner is None or not owner.active else found[1:]
        for entry in extra:
            if owner is None:
                detail = "entry with our tag but no such integration"
            elif not owner.active:
                detail = "integration is deleted"
            else:
                detail = "a second entry for the same integration"
            findings.append(
                SyncFinding("orphaned", entry.unique_id, integration_id, detail, entry=entry)
            )
    return sorted(findings, key=lambda f: (f.integration_id or "", f.unique_id or "", f.kind))


async def repair(
    client: AkixiClient,
    settings: Settings,
    finding: SyncFinding,
    integrations: Sequence[IntegrationState],
) -> dict[str, Any]:
    """Fix one finding with the same calls the mirror deliveries make."""
    if finding.kind == "orphaned":
        assert finding.entry is not None
        return await mirror_delete(
            client, settings, integration_id=finding.integration_id, entry=finding.entry
        )
    integration = next(
        item for item in integrations if item.integration_id == finding.integration_id
    )
    if finding.kind == "missing":
        return await mirror_upsert(
            client,
            settings,
            integration_id=integration.integration_id,
            name=integration.name,
            created=True,
        )
    assert finding.entry is not None
    unique_id = _reachable(finding.entry, integration.integration_id)
    await client.omnichannel_change(unique_id, finding.changes)
    return {"unique_id": unique_id, "operations": [ax.OMNICHANNEL_CHANGE]}
