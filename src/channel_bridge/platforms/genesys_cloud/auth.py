"""Genesys Cloud OAuth client credentials as an `httpx.Auth`.

Token: `POST https://login.<region>/oauth/token`, form `grant_type=client_credentials`, the
client id and secret as HTTP Basic credentials (read). Every API call carries
`Authorization: Bearer <access_token>`.

The token is cached and refreshed once `refresh_ratio` of its `expires_in` has passed.
Refresh is single-flight: an `asyncio.Lock` is held only around the token request, so many
concurrent deliveries cause one token request. A 401 drops the token (once, for every request
that used it) and the request is retried once with a fresh one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx
from pydantic import SecretStr

from channel_bridge.client_credentials import AccessToken, TokenSlot, read_token
from channel_bridge.ops.logging import get_logger
from channel_bridge.ops.logging import secrets as log_secrets
from channel_bridge.platforms.genesys_cloud.errors import (
    GenesysCloudAuthError,
    GenesysCloudRejectedError,
    GenesysCloudRetryableError,
    error_for_response,
    error_for_transport,
)

log = get_logger(__name__)

TOKEN_PATH = "/oauth/token"
# (inferred) an OAuth client's default token duration is 24 h; used only when the
# answer has no expires_in.
DEFAULT_EXPIRES_IN_S = 86400
# Statuses from the token endpoint that mean "these credentials are wrong", not "try later".
CREDENTIAL_REJECTIONS = frozenset({400, 401, 403})


class GenesysCloudTokenAuth(httpx.Auth):
    """Bearer token on every request; one refresh and one retry on a 401."""

    def __init__(
        self,
        *,
        login_base_url: str,
        client_id: str,
        client_secret: SecretStr,
        token_http: httpx.AsyncClient,
        refresh_ratio: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < refresh_ratio <= 1:
            raise ValueError("refresh_ratio must be in (0, 1]")
        self._token_url = login_base_url.rstrip("/") + TOKEN_PATH
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_http = token_http
        self._refresh_ratio = refresh_ratio
        self._clock = clock
        self._slot = TokenSlot()
        self.token_requests = 0
        log_secrets.add(client_secret.get_secret_value())

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise RuntimeError("GenesysCloudTokenAuth is async only: use it with httpx.AsyncClient")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code != 401:
            return
        self.invalidate(token)
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            raise error_for_response(
                response,
                f"{request.method} {request.url.path}",
                error_class=GenesysCloudAuthError,
            )

    async def token(self) -> AccessToken:
        """A fresh token from the cache, or from one refresh shared by all waiting callers."""
        return await self._slot.fresh(
            clock=self._clock, refresh_ratio=self._refresh_ratio, fetch=self._request_token
        )

    def invalidate(self, token: AccessToken) -> None:
        """Forget `token` if it is still the cached one (a newer token is kept)."""
        self._slot.invalidate(token)

    async def _request_token(self) -> AccessToken:
        self.token_requests += 1
        operation = "token request"
        started = self._clock()
        try:
            response = await self._token_http.post(
                self._token_url,
                data={"grant_type": "client_credentials"},
                auth=(self._client_id, self._client_secret.get_secret_value()),
                headers={"accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise error_for_transport(exc, operation) from exc
        if response.status_code in CREDENTIAL_REJECTIONS:
            # Wrong credentials never heal by retrying: dead-letter, for an operator.
            raise error_for_response(response, operation, error_class=GenesysCloudRejectedError)
        if response.is_error:
            raise error_for_response(response, operation)
        token = read_token(
            response,
            obtained_at=started,
            default_expires_in_s=DEFAULT_EXPIRES_IN_S,
            unusable=lambda: GenesysCloudRetryableError(
                f"Genesys Cloud token request failed: HTTP {response.status_code} "
                "without a usable access_token"
            ),
        )
        log.info("genesys cloud token obtained", expires_in_s=token.expires_in_s)
        return token
