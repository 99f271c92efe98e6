"""A Genesys Cloud Open Messaging simulator following docs/genesys-cloud-contract.md.

It plays both of Genesys Cloud's parts: the API the bridge calls (the OAuth token endpoint
with Basic client credentials, the inbound message / event / receipt endpoints and the
integration endpoint, each refusing a missing or unknown bearer token), and the outbound
webhook (`emit_webhook` signs an `OpenNormalizedMessage` with the integration's secret token
as `X-Hub-Signature-256` and posts it to the bridge). Attachments of agent messages are
served from `/media/{id}` (pre-signed in Genesys Cloud; no credentials here either), and the
attachments of inbound messages are fetched from their `url`, as Genesys does.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from channel_bridge.platforms.genesys_cloud.schemas import (
    InboundEvent,
    InboundMessage,
    InboundReceipt,
    IntegrationRequest,
    IntegrationUpdate,
    media_type_for,
)
from channel_bridge.platforms.genesys_cloud.signing import SIGNATURE_HEADER, sign

INBOUND_MODELS: dict[str, type[BaseModel]] = {
    "message": InboundMessage,
    "event": InboundEvent,
    "receipt": InboundReceipt,
}


@dataclass
class SandboxIntegration:
    integration_id: str
    name: str
    webhook_url: str
    secret_token: str


@dataclass
class ReceivedInbound:
    kind: str
    integration_id: str
    headers: dict[str, str]
    document: Any
    answer_id: str


@dataclass
class StoredAttachment:
    content: bytes
    mime: str
    filename: str


@dataclass
class FetchedAttachment:
    """An inbound message's attachment as Genesys fetched it from its `url`."""

    url: str
    status: int | None
    content: bytes
    mime: str | None
    error: str | None = None


@dataclass
class GenesysCloudSandbox:
    """State of the simulator; tests and the demo read `received` and set the faults."""

    client_id: str
    client_secret: str
    integrations: dict[str, SandboxIntegration] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    received: list[ReceivedInbound] = field(default_factory=list)
    media: dict[str, StoredAttachment] = field(default_factory=dict)
    # What Genesys fetched for the attachments of inbound messages (it fetches each `url`
    # itself, without credentials); `media_fetcher` is the client it fetches with (default:
    # a plain one over the network).
    fetched: list[FetchedAttachment] = field(default_factory=list)
    media_fetcher: httpx.AsyncClient | None = None
    # Faults: the next N inbound calls answer 429 (with Retry-After), or this status.
    throttle_next: int = 0
    fail_next: int = 0
    fail_status: int = 503
    token_requests: int = 0

    def add_integration(
        self, integration_id: str, *, secret_token: str, webhook_url: str = "", name: str = "bridge"
    ) -> SandboxIntegration:
        integration = SandboxIntegration(integration_id, name, webhook_url, secret_token)
        self.integrations[integration_id] = integration
        return integration

    def calls(self, kind: str) -> list[ReceivedInbound]:
        return [call for call in self.received if call.kind == kind]

    # --- Genesys's side of the webhook ---------------------------------------------------

    def agent_message(
        self,
        integration_id: str,
        to: str,
        text: str | None = None,
        *,
        attachments: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """An outbound `OpenNormalizedMessage` an agent wrote (`type: Text`)."""
        message = self._normalized(integration_id, to, "Text")
        if text is not None:
            message["text"] = text
        if attachments:
            message["content"] = [
                {"contentType": "Attachment", "attachment": attachment}
                for attachment in attachments
            ]
        return message

    def agent_typing(self, integration_id: str, to: str) -> dict[str, Any]:
        message = self._normalized(integration_id, to, "Event")
        message["events"] = [{"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}]
        return message

    def receipt(self, integration_id: str, to: str, message_id: str, status: str) -> dict[str, Any]:
        """A receipt for a customer message the bridge sent in (its id as Genesys answered)."""
        receipt = self._normalized(integration_id, to, "Receipt")
        receipt.update({"id": message_id, "status": status, "isFinalReceipt": True})
        receipt["direction"] = "Inbound"
        receipt["channel"]["messageId"] = message_id
        return receipt

    def attachment(self, base_url: str, content: bytes, mime: str, filename: str) -> dict[str, str]:
        """Store media and return the `attachment` object that points at it."""
        media_id = uuid.uuid4().hex
        self.media[media_id] = StoredAttachment(content, mime, filename)
        return {
            "mediaType": media_type_for(mime),
            "url": f"{base_url.rstrip('/')}/media/{media_id}",
            "mime": mime,
            "filename": filename,
        }

    async def fetch_attachments(self, document: Any) -> None:
        """Fetch each attachment of an inbound message, as Genesys does before the agent sees
        it; a failure is recorded (the message itself was accepted)."""
        for item in document.get("content") or ():
            url = (item.get("attachment") or {}).get("url")
            if not isinstance(url, str):
                continue
            try:
                if self.media_fetcher is not None:
                    response = await self.media_fetcher.get(url)
                else:
                    async with httpx.AsyncClient(timeout=10.0) as client:
                        response = await client.get(url)
            except httpx.HTTPError as exc:
                self.fetched.append(FetchedAttachment(url, None, b"", None, type(exc).__name__))
                continue
            self.fetched.append(
                FetchedAttachment(
                    url,
                    response.status_code,
                    response.content,
                    response.headers.get("content-type"),
                    None if response.is_success else response.text[:200],
                )
            )

    def signed_webhook(self, integration_id: str, document: Any) -> tuple[bytes, dict[str, str]]:
        """The body and headers Genesys would post to the integration's webhook."""
        body = json.dumps(document, separators=(",", ":")).encode()
        secret = self.integrations[integration_id].secret_token
        return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}

    async def emit_webhook(
        self, client: httpx.AsyncClient, integration_id: str, document: Any
    ) -> httpx.Response:
        """Post a signed webhook to the bridge (`client` has the bridge as its base URL)."""
        body, headers = self.signed_webhook(integration_id, document)
        return await client.post(
            f"/genesys-cloud/integrations/{integration_id}/webhook", content=body, headers=headers
        )

    def _normalized(self, integration_id: str, to: str, kind: str) -> dict[str, Any]:
        message_id = uuid.uuid4().hex
        name = self.integrations[integration_id].name
        return {
            "id": message_id,
            "channel": {
                "id": integration_id,
                "platform": "Open",
                "type": "Private",
                "to": {"id": to},
                "from": {"nickname": name, "id": integration_id, "idType": "Opaque"},
                "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "messageId": message_id,
            },
            "type": kind,
            "direction": "Outbound",
        }


def _problem(status: int, message: str, code: str) -> JSONResponse:
    # The Genesys Cloud error body: message, code, status.
    return JSONResponse({"message": message, "code": code, "status": status}, status_code=status)


def create_genesys_cloud_sandbox(state: GenesysCloudSandbox) -> FastAPI:
    app = FastAPI(title="Genesys Cloud Open Messaging simulator")
    app.state.simulator = state

    @app.post("/oauth/token")
    async def token(request: Request) -> Response:
        state.token_requests += 1
        expected = base64.b64encode(f"{state.client_id}:{state.client_secret}".encode()).decode()
        form = (await request.body()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form != "grant_type=client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        value = uuid.uuid4().hex
        state.tokens.add(value)
        return JSONResponse({"access_token": value, "token_type": "bearer", "expires_in": 86400})

    def _authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.startswith("Bearer ") and header.removeprefix("Bearer ") in state.tokens

    @app.post("/api/v2/conversations/messages/{integration_id}/inbound/open/{kind}")
    async def inbound(integration_id: str, kind: str, request: Request) -> Response:
        if not _authorized(request):
            return _problem(401, "Invalid login credentials.", "bad.credentials")
        if kind not in INBOUND_MODELS:
            return _problem(404, f"No inbound/open/{kind}", "not.found")
        if integration_id not in state.integrations:
            return _problem(404, "Integration not found", "not.found")
        if state.throttle_next > 0:
            state.throttle_next -= 1
            response = _problem(429, "Rate limit exceeded", "too.many.requests")
            response.headers["Retry-After"] = "1"
            return response
        if state.fail_next > 0:
            state.fail_next -= 1
            return _problem(state.fail_status, "Service unavailable", "service.unavailable")
        try:
            document = json.loads(await request.body())
            INBOUND_MODELS[kind].model_validate(document)
        except (ValueError, ValidationError) as exc:
            return _problem(400, f"Invalid {kind}: {exc}", "bad.request")
        answer_id = uuid.uuid4().hex
        if kind == "message":
            # Before the message is recorded: whoever sees it can see its attachments too.
            await state.fetch_attachments(document)
        state.received.append(
            ReceivedInbound(kind, integration_id, dict(request.headers), document, answer_id)
        )
        if kind == "message":
            return JSONResponse(
                {
                    "id": answer_id,
                    "channel": {**document.get("channel", {}), "id": integration_id},
                    "type": "Text",
                    "text": document.get("text"),
                    "direction": "Inbound",
                }
            )
        return JSONResponse({"id": answer_id, **document}, status_code=202)

    @app.post("/api/v2/conversations/messaging/integrations/open")
    async def create_integration(request: Request) -> Response:
        if not _authorized(request):
            return _problem(401, "Invalid login credentials.", "bad.credentials")
        try:
            body = IntegrationRequest.model_validate(json.loads(await request.body()))
        except (ValueError, ValidationError) as exc:
            return _problem(400, f"Invalid integration: {exc}", "bad.request")
        if not body.outboundNotificationWebhookUrl.startswith("https://"):
            return _problem(400, "The webhook URL must be https on port 443", "bad.request")
        integration = state.add_integration(
            str(uuid.uuid4()),
            secret_token=body.outboundNotificationWebhookSignatureSecretToken,
            webhook_url=body.outboundNotificationWebhookUrl,
            name=body.name,
        )
        return JSONResponse(
            {
                "id": integration.integration_id,
                "name": integration.name,
                "outboundNotificationWebhookUrl": integration.webhook_url,
                "status": "Active",
            }
        )

    @app.patch("/api/v2/conversations/messaging/integrations/open/{integration_id}")
    async def update_integration(integration_id: str, request: Request) -> Response:
        if not _authorized(request):
            return _problem(401, "Invalid login credentials.", "bad.credentials")
        integration = state.integrations.get(integration_id)
        if integration is None:
            return _problem(404, "Integration not found", "not.found")
        try:
            update = IntegrationUpdate.model_validate(json.loads(await request.body()))
        except (ValueError, ValidationError) as exc:
            return _problem(400, f"Invalid integration update: {exc}", "bad.request")
        integration.name = update.name
        if update.outboundNotificationWebhookUrl is not None:
            integration.webhook_url = update.outboundNotificationWebhookUrl
        return JSONResponse(
            {
                "id": integration_id,
                "name": integration.name,
                "outboundNotificationWebhookUrl": integration.webhook_url,
            }
        )

    @app.get("/media/{media_id}")
    async def media(media_id: str) -> Response:
        stored = state.media.get(media_id)
        if stored is None:
            return _problem(404, "No such media", "not.found")
        return Response(stored.content, media_type=stored.mime)

    return app
