"""AXP OAuth client-credentials tokens as an `httpx.Auth`, plus the shared AXP HTTP client.

Token: `POST {base}/api/auth/v1/{accountId}/protocol/openid-connect/token` (Auth spec 1.0.2,
`postGenerateToken`), form `grant_type=client_credentials, client_id, client_secret`, header
`appkey`. Every other AXP call carries `Authorization: Bearer …` and `appkey`.

The token is cached per (accountId, client_id) and refreshed once `refresh_ratio` of its
`expires_in` has passed. Refresh is single-flight: an `asyncio.Lock` is held only while the
token endpoint is called, so a thousand concurrent requests cause one token request and no
request waits on another request's I/O.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from channel_bridge.client_credentials import AccessToken, TokenCache, read_token
from channel_bridge.ops.logging import get_logger
from channel_bridge.ops.logging import secrets as log_secrets
from channel_bridge.outbound import build_client, post_small
from channel_bridge.platforms.axp.errors import (
    AxpAuthError,
    AxpCredentialsError,
    AxpRetryableError,
    error_from_response,
    error_from_transport,
)
from channel_bridge.settings import ConfigError, Settings

log = get_logger(__name__)

TOKEN_PATH = "/api/auth/v1/{account_id}/protocol/openid-connect/token"
# A token endpoint answering without expires_in: the spec's own example value.
DEFAULT_EXPIRES_IN_S = 900
# Statuses from the token endpoint that mean "these credentials are wrong", not "try later".
CREDENTIAL_REJECTIONS = frozenset({400, 401, 403, 404})


class AxpNotConfigured(ConfigError):
    """An AXP client was requested but BRIDGE_AXP_* settings are missing."""


class AxpTokenAuth(httpx.Auth):
    """Bearer token + appkey on every request; one refresh and one retry on a 401."""

    def __init__(
        self,
        *,
        token_url_base: str,
        account_id: str,
        client_id: str,
        client_secret: SecretStr,
        app_key: SecretStr,
        token_http: httpx.AsyncClient,
        refresh_ratio: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
        cache: TokenCache | None = None,
    ) -> None:
        if not 0 < refresh_ratio <= 1:
            raise ValueError("refresh_ratio must be in (0, 1]")
        self._token_url = token_url_base.rstrip("/") + TOKEN_PATH.format(
            account_id=quote(account_id, safe="")
        )
        self._account_id = account_id
        self._client_id = client_id
        self._client_secret = client_secret
        self._app_key = app_key
        self._token_http = token_http
        self._refresh_ratio = refresh_ratio
        self._clock = clock
        self._entry = (cache or TokenCache()).entry(account_id, client_id)
        self.token_requests = 0
        log_secrets.add(client_secret.get_secret_value(), app_key.get_secret_value())

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise RuntimeError("AxpTokenAuth is async only: use it with httpx.AsyncClient")

    def headers_for(self, token: AccessToken) -> dict[str, str]:
        """What every AXP API request carries: the app key and the bearer token."""
        return {
            "appkey": self._app_key.get_secret_value(),
            "authorization": f"Bearer {token.value}",
        }

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["appkey"] = self._app_key.get_secret_value()
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code != 401:
            return
        # The token was revoked or expired early: drop it (once, for all requests that used
        # it) and retry this request a single time with a fresh one.
        self.invalidate(token)
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            raise error_from_response(
                response, operation=f"{request.method} {request.url.path}", error_class=AxpAuthError
            )

    async def token(self) -> AccessToken:
        """A fresh token from the cache, or from one refresh shared by all waiting callers."""
        return await self._entry.fresh(
            clock=self._clock, refresh_ratio=self._refresh_ratio, fetch=self._request_token
        )

    def invalidate(self, token: AccessToken) -> None:
        """Forget `token` if it is still the cached one (a newer token is kept)."""
        self._entry.invalidate(token)

    async def _request_token(self) -> AccessToken:
        self.token_requests += 1
        operation = "token request"
        started = self._clock()
        try:
            response = await self._token_http.post(
                self._token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._client_id,
                    "client_secret": self._client_secret.get_secret_value(),
                },
                headers={"appkey": self._app_key.get_secret_value(), "accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise error_from_transport(exc, operation=operation) from exc
        if response.status_code in CREDENTIAL_REJECTIONS:
            raise error_from_response(
                response, operation=operation, error_class=AxpCredentialsError
            )
        if response.is_error:
            raise error_from_response(response, operation=operation)
        token = read_token(
            response,
            obtained_at=started,
            default_expires_in_s=DEFAULT_EXPIRES_IN_S,
            unusable=lambda: AxpRetryableError(
                f"AXP token request failed: HTTP {response.status_code} "
                "without a usable access_token"
            ),
        )
        log.info("axp token obtained", account_id=self._account_id, expires_in_s=token.expires_in_s)
        return token


class AxpHttpClient(httpx.AsyncClient):
    """The AXP API client; closing it also closes the client used for the token endpoint.

    `post_json` is the hot path's request (a customer message): it goes straight to the
    transport with the cached token, skipping what httpx's client adds around a request
    (URL merging, the auth-flow generator, redirect and cookie handling), which measured
    about as much CPU as the request itself on the aiohttp pool. Everything else uses the
    full client.
    """

    def __init__(self, *, token_http: httpx.AsyncClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token_http = token_http
        self._token_auth = kwargs.get("auth")
        self._timeout_extension = self.timeout.as_dict()

    async def post_json(self, url: httpx.URL, body: bytes, *, operation: str) -> bytes:
        """POST a JSON body to an absolute URL; the body of a 2xx answer, or the classified
        error. A 401 drops the token (once for every request that used it) and retries once
        with a fresh one, as `AxpTokenAuth` does for the other requests."""
        auth = self._token_auth
        assert isinstance(auth, AxpTokenAuth)
        for attempt in (1, 2):
            token = await auth.token()
            try:
                status, content, response_headers = await post_small(
                    self,
                    url,
                    headers={"content-type": "application/json", **auth.headers_for(token)},
                    body=body,
                    timeouts=self._timeout_extension,
                )
            except httpx.TransportError as exc:
                raise error_from_transport(exc, operation=operation) from exc
            if 200 <= status < 300:
                return content
            if status == 401 and attempt == 1:
                auth.invalidate(token)
                continue
            response = httpx.Response(
                status,
                headers=response_headers,
                content=content,
                request=httpx.Request("POST", url),
            )
            error_class = AxpAuthError if status == 401 else None
            raise error_from_response(response, operation=operation, error_class=error_class)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.token_http.aclose()

    async def __aexit__(self, *args: Any) -> None:
        try:
            await super().__aexit__(*args)
        finally:
            await self.token_http.aclose()


def require_axp_settings(settings: Settings) -> None:
    """Raise AxpNotConfigured naming the first missing BRIDGE_AXP_* variable."""
    required = {
        "axp_base_url": settings.axp_base_url,
        "axp_account_id": settings.axp_account_id,
        "axp_client_id": settings.axp_client_id,
        "axp_client_secret": settings.axp_client_secret,
        "axp_app_key": settings.axp_app_key,
    }
    for name, value in required.items():
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not raw:
            raise AxpNotConfigured(f"BRIDGE_{name.upper()} is not set: AXP is not configured")


def axp_configured(settings: Settings) -> bool:
    try:
        require_axp_settings(settings)
    except AxpNotConfigured:
        return False
    return True


def build_axp_http(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    cache: TokenCache | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AxpHttpClient:
    """An httpx client on BRIDGE_AXP_BASE_URL with token auth; share it between AXP clients."""
    require_axp_settings(settings)
    assert settings.axp_base_url and settings.axp_account_id and settings.axp_client_id
    assert settings.axp_client_secret is not None and settings.axp_app_key is not None
    # The token endpoint and the API get a pool each (an injected transport serves both).
    token_http = build_client(settings, transport=transport)
    auth = AxpTokenAuth(
        token_url_base=settings.axp_base_url,
        account_id=settings.axp_account_id,
        client_id=settings.axp_client_id,
        client_secret=settings.axp_client_secret,
        app_key=settings.axp_app_key,
        token_http=token_http,
        refresh_ratio=settings.axp_token_refresh_ratio,
        clock=clock,
        cache=cache,
    )
    return build_client(  # type: ignore[return-value]
        settings,
        transport=transport,
        client_class=AxpHttpClient,
        token_http=token_http,
        base_url=settings.axp_base_url.rstrip("/"),
        auth=auth,
        headers={"accept": "application/json"},
    )
