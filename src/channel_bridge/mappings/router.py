"""Admin API for channel mappings and integrations (bearer BRIDGE_ADMIN_TOKEN)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status

from channel_bridge.deps import (
    AdminDep,
    InboxDep,
    SecretBoxDep,
    SessionDep,
    SessionmakerDep,
    bridge_state,
)
from channel_bridge.errors import Unprocessable
from channel_bridge.mappings.channel_cache import ChannelCache
from channel_bridge.mappings.schemas import (
    ChannelCreate,
    ChannelDisable,
    ChannelOut,
    ChannelUpdate,
    HeldCallbackDismiss,
    HeldCallbackOut,
    HeldCallbackResolve,
    HeldCallbackResolved,
    IntegrationCreate,
    IntegrationDeleted,
    IntegrationOut,
    IntegrationUpdate,
)
from channel_bridge.mappings.service import ChannelService, IntegrationService


def get_channel_cache(request: Request) -> ChannelCache:
    return bridge_state(request).channel_cache


ChannelCacheDep = Annotated[ChannelCache, Depends(get_channel_cache)]


def get_channel_service(secret_box: SecretBoxDep, channels: ChannelCacheDep) -> ChannelService:
    return ChannelService(secret_box=secret_box, on_change=channels.invalidate)


def get_integration_service(
    request: Request, inbox: InboxDep, sessionmaker: SessionmakerDep, channels: ChannelCacheDep
) -> IntegrationService:
    return IntegrationService(
        inbox=inbox,
        sessionmaker=sessionmaker,
        planner=bridge_state(request).planners.integration_change,
        on_change=channels.invalidate,
    )


@contextmanager
def fields_in_body() -> Iterator[None]:
    """Service errors name bare fields; in the API they live under `body.` like pydantic's."""
    try:
        yield
    except Unprocessable as exc:
        for error in exc.errors or []:
            error["field"] = f"body.{error['field']}"
        raise


# inbox_events.id is a BIGINT: a larger number is refused with a 422, never a 500.
HeldId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ChannelServiceDep = Annotated[ChannelService, Depends(get_channel_service)]
IntegrationServiceDep = Annotated[IntegrationService, Depends(get_integration_service)]

channels_router = APIRouter(
    prefix="/admin/v1/channels", tags=["admin: channels"], dependencies=[AdminDep]
)
integrations_router = APIRouter(
    prefix="/admin/v1/integrations", tags=["admin: integrations"], dependencies=[AdminDep]
)


@channels_router.post("", status_code=status.HTTP_201_CREATED)
async def create_channel(
    data: ChannelCreate, session: SessionDep, service: ChannelServiceDep
) -> ChannelOut:
    with fields_in_body():
        return service.to_out(await service.create(session, data))


@channels_router.get("")
async def list_channels(session: SessionDep, service: ChannelServiceDep) -> list[ChannelOut]:
    return [service.to_out(channel) for channel in await service.list_channels(session)]


@channels_router.get("/{nexus_channel_id}")
async def get_channel(
    nexus_channel_id: str, session: SessionDep, service: ChannelServiceDep
) -> ChannelOut:
    return service.to_out(await service.get(session, nexus_channel_id))


@channels_router.patch("/{nexus_channel_id}")
async def update_channel(
    nexus_channel_id: str, data: ChannelUpdate, session: SessionDep, service: ChannelServiceDep
) -> ChannelOut:
    with fields_in_body():
        channel = await service.update(session, nexus_channel_id, data, source="admin")
    return service.to_out(channel)


@channels_router.post("/{nexus_channel_id}/disable")
async def disable_channel(
    nexus_channel_id: str,
    session: SessionDep,
    service: ChannelServiceDep,
    data: Annotated[ChannelDisable | None, Body()] = None,
) -> ChannelOut:
    reason = data.reason if data else None
    channel = await service.disable(session, nexus_channel_id, reason=reason, source="admin")
    return service.to_out(channel)


@channels_router.delete("/{nexus_channel_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_channel(
    nexus_channel_id: str, session: SessionDep, service: ChannelServiceDep
) -> Response:
    await service.remove(session, nexus_channel_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@integrations_router.post("", status_code=status.HTTP_201_CREATED)
async def create_integration(
    data: IntegrationCreate, session: SessionDep, service: IntegrationServiceDep
) -> IntegrationOut:
    await service.apply_integration_change(
        action="created",
        integration_id=data.integration_id,
        name=data.name,
        account_id=data.account_id,
        channel_provider_id=data.channel_provider_id,
        raw=data.model_dump(exclude_none=True),
        source="admin",
        require_existing=False,
    )
    return service.to_out(await service.get(session, data.integration_id))


@integrations_router.get("")
async def list_integrations(
    session: SessionDep,
    service: IntegrationServiceDep,
    include_deleted: Annotated[bool, Query(description="Also show deleted integrations")] = False,
) -> list[IntegrationOut]:
    rows = await service.list_integrations(session, include_deleted=include_deleted)
    return [service.to_out(row) for row in rows]


# Declared before /{integration_id} so that "pending" is not read as an integration id.
@integrations_router.get("/pending")
async def list_held_callbacks(
    session: SessionDep, service: IntegrationServiceDep
) -> list[HeldCallbackOut]:
    """Lifecycle callbacks stored but not applied: each needs a resolve or a dismiss."""
    return [service.to_held_out(event) for event in await service.list_held(session)]


@integrations_router.get("/pending/{held_id}")
async def get_held_callback(
    held_id: HeldId, session: SessionDep, service: IntegrationServiceDep
) -> HeldCallbackOut:
    return service.to_held_out(await service.get_held(session, held_id))


@integrations_router.post("/pending/{held_id}/resolve")
async def resolve_held_callback(
    held_id: HeldId,
    data: HeldCallbackResolve,
    session: SessionDep,
    service: IntegrationServiceDep,
) -> HeldCallbackResolved:
    """Apply the change the held callback meant, through the same path as the callbacks."""
    with fields_in_body():
        change = await service.resolve_held(held_id=held_id, resolution=data, source="admin")
    return HeldCallbackResolved(
        held=service.to_held_out(await service.get_held(session, held_id)),
        integration=service.to_out(await service.get(session, change.integration_id)),
        disabled_channels=change.disabled_channels,
    )


@integrations_router.post("/pending/{held_id}/dismiss")
async def dismiss_held_callback(
    held_id: HeldId,
    session: SessionDep,
    service: IntegrationServiceDep,
    data: Annotated[HeldCallbackDismiss | None, Body()] = None,
) -> HeldCallbackOut:
    """Close a held callback without applying it (a test call, a duplicate already handled)."""
    held = await service.dismiss_held(
        session, held_id=held_id, reason=data.reason if data else None, source="admin"
    )
    return service.to_held_out(held)


@integrations_router.get("/{integration_id}")
async def get_integration(
    integration_id: str, session: SessionDep, service: IntegrationServiceDep
) -> IntegrationOut:
    return service.to_out(await service.get(session, integration_id))


@integrations_router.patch("/{integration_id}")
async def update_integration(
    integration_id: str,
    data: IntegrationUpdate,
    session: SessionDep,
    service: IntegrationServiceDep,
) -> IntegrationOut:
    await service.apply_integration_change(
        action="updated",
        integration_id=integration_id,
        name=data.name,
        account_id=data.account_id,
        channel_provider_id=data.channel_provider_id,
        raw=data.model_dump(exclude_none=True),
        source="admin",
        require_existing=True,
    )
    return service.to_out(await service.get(session, integration_id))


@integrations_router.delete("/{integration_id}")
async def delete_integration(
    integration_id: str, session: SessionDep, service: IntegrationServiceDep
) -> IntegrationDeleted:
    change = await service.apply_integration_change(
        action="deleted",
        integration_id=integration_id,
        raw=None,
        source="admin",
        require_existing=True,
    )
    integration = service.to_out(await service.get(session, integration_id))
    return IntegrationDeleted(integration=integration, disabled_channels=change.disabled_channels)
