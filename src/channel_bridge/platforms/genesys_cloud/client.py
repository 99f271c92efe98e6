"""Open Messaging API client: the bridge -> Genesys Cloud direction, and provisioning.

`POST /api/v2/conversations/messages/{integrationId}/inbound/open/{message|event|receipt}`
(read) carry a customer's message, typing and receipts; `POST
/api/v2/conversations/messaging/integrations/open` (read) creates the integration whose
outbound webhook points at the bridge. Every call carries the OAuth bearer token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from channel_bridge.media import DEFAULT_TRANSFERS, MediaSpool, MediaTransfers
from channel_bridge.ops.logging import get_logger
from channel_bridge.outbound import build_client
from channel_bridge.platforms.genesys_cloud.auth import GenesysCloudTokenAuth
from channel_bridge.platforms.genesys_cloud.errors import (
    GenesysCloudConfigError,
    GenesysCloudRejectedError,
    GenesysCloudRetryableError,
    error_for_response,
    error_for_transport,
)
from channel_bridge.platforms.genesys_cloud.schemas import (
    InboundEvent,
    InboundMessage,
    InboundReceipt,
    IntegrationRequest,
    IntegrationResponse,
    IntegrationUpdate,
    OpenNormalizedMessage,
    dump,
)
from channel_bridge.settings import Settings

log = get_logger(__name__)

INBOUND_PATH = "/api/v2/conversations/messages/{integrationId}/inbound/open/{kind}"
INTEGRATIONS_PATH = "/api/v2/conversations/messaging/integrations/open"

Model = TypeVar("Model", bound=BaseModel)


def api_base_url(settings: Settings) -> str:
    return (
        settings.genesys_cloud_api_base_url or f"https://api.{settings.genesys_cloud_region}"
    ).rstrip("/")


def login_base_url(settings: Settings) -> str:
    return (
        settings.genesys_cloud_login_base_url or f"https://login.{settings.genesys_cloud_region}"
    ).rstrip("/")


def genesys_cloud_configured(settings: Settings) -> bool:
    secret = settings.genesys_cloud_client_secret
    return bool(settings.genesys_cloud_client_id and secret and secret.get_secret_value())


def build_genesys_cloud_http(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> GenesysCloudHttpClient:
    """An httpx client on the region's API host with token auth (one pool for the token)."""
    if not genesys_cloud_configured(settings):
        raise GenesysCloudConfigError(
            "BRIDGE_GENESYS_CLOUD_CLIENT_ID and BRIDGE_GENESYS_CLOUD_CLIENT_SECRET are not set"
        )
    assert settings.genesys_cloud_client_id and settings.genesys_cloud_client_secret
    token_http = build_client(settings, transport=transport)
    auth = GenesysCloudTokenAuth(
        login_base_url=login_base_url(settings),
        client_id=settings.genesys_cloud_client_id,
        client_secret=settings.genesys_cloud_client_secret,
        token_http=token_http,
        refresh_ratio=settings.genesys_cloud_token_refresh_ratio,
        clock=clock,
    )
    return build_client(  # type: ignore[return-value]
        settings,
        transport=transport,
        client_class=GenesysCloudHttpClient,
        token_http=token_http,
        base_url=api_base_url(settings),
        auth=auth,
        headers={"accept": "application/json"},
    )


class GenesysCloudHttpClient(httpx.AsyncClient):
    """The API client; closing it also closes the client of the token endpoint."""

    def __init__(self, *, token_http: httpx.AsyncClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token_http = token_http

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.token_http.aclose()


class GenesysCloudClient:
    """Calls to the Open Messaging API; failures raise the relay's error classes.

    `media_http` downloads the attachments of agent messages: their URLs are pre-signed
    (inferred), so that client carries no credentials and the bearer token never leaves
    the API host.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        media_http: httpx.AsyncClient | None = None,
        media_max_bytes: int = 25 * 1024 * 1024,
        allow_http_media: bool = False,
        transfers: MediaTransfers | None = None,
    ) -> None:
        self._http = http
        self._media_http = media_http
        self._media_max_bytes = media_max_bytes
        self._allow_http_media = allow_http_media
        # The process's media budget and spool, shared with the other platforms' transfers.
        self._transfers = transfers or DEFAULT_TRANSFERS

    async def fetch_media(self, url: str) -> MediaSpool:
        """An agent message's attachment in a spool (the caller closes it), at most
        `media_max_bytes`, streamed within the process's media budget."""
        operation = "media download"
        scheme = urlsplit(url).scheme.lower()
        if self._media_http is None or not (
            scheme == "https" or (scheme == "http" and self._allow_http_media)
        ):
            raise GenesysCloudConfigError(
                f"Genesys Cloud {operation}: refused URL scheme {scheme!r}"
            )
        limit = self._media_max_bytes
        try:
            async with self._media_http.stream("GET", url) as response:
                if response.is_error:
                    await response.aread()
                    raise error_for_response(response, operation)
                return await self._transfers.spool_response(
                    response,
                    limit=limit,
                    too_large=lambda size: GenesysCloudRejectedError(
                        f"attachment of {size} bytes exceeds {limit}"
                    ),
                )
        except httpx.TransportError as exc:
            raise error_for_transport(exc, operation) from exc

    async def send_message(
        self, integration_id: str, message: InboundMessage
    ) -> OpenNormalizedMessage:
        """A customer message into Genesys Cloud; Genesys answers with the normalized message."""
        return await self._post(
            "inbound message",
            self._inbound(integration_id, "message"),
            message,
            OpenNormalizedMessage,
        )

    async def send_event(self, integration_id: str, event: InboundEvent) -> dict[str, Any]:
        """A typing indicator from the customer."""
        return await self._post_raw("inbound event", self._inbound(integration_id, "event"), event)

    async def send_receipt(self, integration_id: str, receipt: InboundReceipt) -> dict[str, Any]:
        """What became of an agent message on the other side: Delivered or Failed."""
        return await self._post_raw(
            "inbound receipt", self._inbound(integration_id, "receipt"), receipt
        )

    async def create_integration(self, request: IntegrationRequest) -> IntegrationResponse:
        """Create the Open Messaging integration whose outbound webhook is the bridge."""
        return await self._post(
            "create integration", INTEGRATIONS_PATH, request, IntegrationResponse
        )

    async def update_webhook_url(
        self, integration_id: str, url: str, *, name: str
    ) -> IntegrationResponse:
        """Point the integration's outbound webhook at `url` (PATCH by id, with its name)."""
        path = f"{INTEGRATIONS_PATH}/{quote(integration_id, safe='')}"
        update = IntegrationUpdate(name=name, outboundNotificationWebhookUrl=url)
        document = await self._send("PATCH", "update integration", path, dump(update))
        try:
            return IntegrationResponse.model_validate(document)
        except ValidationError as exc:
            raise GenesysCloudRetryableError(
                "Genesys Cloud update integration answered 2xx with an unreadable body"
            ) from exc

    @staticmethod
    def _inbound(integration_id: str, kind: str) -> str:
        return INBOUND_PATH.format(integrationId=quote(integration_id, safe=""), kind=kind)

    async def _post(self, operation: str, path: str, body: BaseModel, answer: type[Model]) -> Model:
        document = await self._post_raw(operation, path, body)
        try:
            return answer.model_validate(document)
        except ValidationError as exc:
            raise GenesysCloudRetryableError(
                f"Genesys Cloud {operation} answered 2xx with an unreadable body"
            ) from exc

    async def _post_raw(self, operation: str, path: str, body: BaseModel) -> dict[str, Any]:
        return await self._send("POST", operation, path, dump(body))

    async def _send(
        self, method: str, operation: str, path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise error_for_transport(exc, operation) from exc
        if response.is_error:
            raise error_for_response(response, operation)
        if not response.content:
            return {}
        try:
            document = response.json()
        except ValueError:
            return {}
        return document if isinstance(document, dict) else {}
