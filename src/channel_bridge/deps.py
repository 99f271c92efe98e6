"""Annotated dependency aliases that keep route signatures short."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.errors import Unauthorized
from channel_bridge.security import SecretBox, tokens_equal
from channel_bridge.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessionmaker  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


def get_secret_box(request: Request) -> SecretBox:
    return request.app.state.secret_box  # type: ignore[no-any-return]


def get_http_client(request: Request) -> httpx.AsyncClient:
    return request.app.state.http  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]
HttpClientDep = Annotated[httpx.AsyncClient, Depends(get_http_client)]


# Declares the scheme in OpenAPI (the Authorize button); the check itself is ours, so a
# missing or wrong token is one 401 problem+json either way.
admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="adminToken", description="BRIDGE_ADMIN_TOKEN"
)


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    """Bearer BRIDGE_ADMIN_TOKEN, compared in constant time."""
    token = credentials.credentials if credentials is not None else ""
    if not tokens_equal(token.strip(), request.app.state.settings.admin_token):
        raise Unauthorized(
            "A valid admin bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )


AdminDep = Depends(require_admin)
