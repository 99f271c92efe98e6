"""Annotated dependency aliases that keep route signatures short (vendor-free: a platform's
own aliases live beside its routes).

Each reads the lifespan's `State` from `request.state` (`state.py`); the webhook routes, called
past FastAPI's dependency solving (`ops/fast_path.py`), call `bridge_state(request)` directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.engine import transaction
from channel_bridge.errors import Unauthorized
from channel_bridge.relay.destinations import DestinationRegistry
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.worker import RelayWorker
from channel_bridge.security import SecretBox, tokens_equal
from channel_bridge.settings import Settings
from channel_bridge.state import State


def bridge_state(request: Request) -> State:
    """The lifespan's State, as Starlette put it in this request's scope."""
    return request.state.bridge  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return bridge_state(request).settings


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    return bridge_state(request).sessionmaker


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The route's session: committed when the route returns, before the response is sent
    (scope="function"), rolled back when it raises. Services only flush."""
    async with transaction(bridge_state(request).sessionmaker) as session:
        yield session


def get_secret_box(request: Request) -> SecretBox:
    return bridge_state(request).secret_box  # type: ignore[return-value]


def get_http_client(request: Request) -> httpx.AsyncClient:
    return bridge_state(request).http


def get_inbox(request: Request) -> Inbox:
    return bridge_state(request).inbox


def get_destinations(request: Request) -> DestinationRegistry:
    return bridge_state(request).destinations


def get_worker(request: Request) -> RelayWorker | None:
    return bridge_state(request).worker


StateDep = Annotated[State, Depends(bridge_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]
HttpClientDep = Annotated[httpx.AsyncClient, Depends(get_http_client)]
InboxDep = Annotated[Inbox, Depends(get_inbox)]
DestinationsDep = Annotated[DestinationRegistry, Depends(get_destinations)]
WorkerDep = Annotated[RelayWorker | None, Depends(get_worker)]


# Declares the scheme in OpenAPI (the Authorize button); the check itself is ours, so a
# missing or wrong token is one 401 problem+json either way.
admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="adminToken", description="BRIDGE_ADMIN_TOKEN"
)


def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    """Bearer BRIDGE_ADMIN_TOKEN, compared in constant time."""
    token = credentials.credentials if credentials is not None else ""
    if not tokens_equal(token.strip(), settings.admin_token):
        raise Unauthorized(
            "A valid admin bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )


AdminDep = Depends(require_admin)
