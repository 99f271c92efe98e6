"""A Digital Channels (Nexus) simulator that follows the contract in docs/nexus-contract.md.

It verifies what the bridge sends exactly as Nexus would (x-ccid, X-Hub-Signature with the
channel's API secret), records it, answers in the `{status, data}` envelope, and can inject
faults. `signed_webhook` / `emit_webhook` play Nexus's side of the webhook.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from channel_bridge.platforms.nexus.client import SYNTHETIC_MEDIA_PREFIX
from channel_bridge.platforms.nexus.signing import (
    SIGNATURE_HEADER,
    Encoding,
    EncodingSetting,
    sign,
    verify,
)
from channel_bridge.settings import Settings


@dataclass
class SandboxChannel:
    channel_id: str
    webhook_secret: str
    api_secret: str


@dataclass
class Faults:
    """Injected failures: a share of 5xx answers, added latency, and queued 429s."""

    error_rate: float = 0.0
    error_status: int = 503
    latency_s: float = 0.0
    throttle_next: int = 0
    retry_after_s: int = 1


@dataclass
class ReceivedCall:
    kind: str
    channel_id: str | None
    headers: dict[str, str]
    body: bytes
    document: Any = None


@dataclass
class StoredMedia:
    media_id: str
    channel_id: str
    filename: str
    mimetype: str
    content: bytes


@dataclass
class NexusSandbox:
    """State of the simulator; tests and the demo read `received` and set `faults`."""

    ccid: str
    channels: dict[str, SandboxChannel] = field(default_factory=dict)
    # How Nexus encodes its digests (the bridge must be configured to match).
    signature_encoding: EncodingSetting = "hex"
    api_key: str | None = None
    faults: Faults = field(default_factory=Faults)
    received: list[ReceivedCall] = field(default_factory=list)
    media: dict[str, StoredMedia] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    # Where channels the simulator was not told about are looked up (sandbox mode: the
    # bridge's own channel mappings), so every channel an operator creates exists here too.
    resolver: Callable[[str], Awaitable[SandboxChannel | None]] | None = None

    def add_channel(
        self, channel_id: str, *, webhook_secret: str, api_secret: str
    ) -> SandboxChannel:
        channel = SandboxChannel(channel_id, webhook_secret, api_secret)
        self.channels[channel_id] = channel
        return channel

    async def resolve(self, channel_id: str) -> SandboxChannel | None:
        """The channel as the resolver knows it now (registered here), else None."""
        if self.resolver is None:
            return None
        found = await self.resolver(channel_id)
        if found is not None:
            self.channels[channel_id] = found
        return found

    def calls(self, kind: str) -> list[ReceivedCall]:
        return [call for call in self.received if call.kind == kind]

    # --- Nexus -> bridge ----------------------------------------------------------------

    def signed_webhook(
        self, channel_id: str, message: dict[str, Any], *, trace_id: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers Nexus would POST to the channel's webhook URL."""
        channel = self.channels[channel_id]
        body = json.dumps(message, separators=(",", ":")).encode()
        encoding: Encoding = "base64" if self.signature_encoding == "base64" else "hex"
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, channel.webhook_secret, encoding),
            "X-B3-TraceId": trace_id or uuid.uuid4().hex,
        }
        return body, headers

    async def emit_webhook(
        self,
        client: httpx.AsyncClient,
        channel_id: str,
        message: dict[str, Any],
        *,
        trace_id: str | None = None,
    ) -> httpx.Response:
        """POST a signed agent message to the bridge at `/nexus/channels/{channelId}/webhook`."""
        body, headers = self.signed_webhook(channel_id, message, trace_id=trace_id)
        return await client.post(
            f"/nexus/channels/{channel_id}/webhook", content=body, headers=headers
        )


def _envelope(
    data: Any,
    *,
    code: int = 0,
    message: str = "OK",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"status": {"code": code, "message": message}, "data": data},
        status_code=status,
        headers=headers,
    )


def _failure(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"status": {"code": status, "message": message}}, status_code=status, headers=headers
    )


def create_nexus_sandbox(sandbox: NexusSandbox, settings: Settings | None = None) -> FastAPI:
    """The simulator app; paths follow the same (provisional) settings as the bridge's client."""
    settings = settings or Settings()
    app = FastAPI(title="Nexus sandbox")
    app.state.sandbox = sandbox

    async def faulted() -> Response | None:
        faults = sandbox.faults
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        if faults.throttle_next > 0:
            faults.throttle_next -= 1
            return _failure(429, "Too many requests", {"Retry-After": str(faults.retry_after_s)})
        if faults.error_rate and sandbox.rng.random() < faults.error_rate:
            return _failure(faults.error_status, "Injected failure")
        return None

    async def authenticate(
        request: Request, channel_id: str, signed: bytes | None
    ) -> Response | None:
        if request.headers.get("x-ccid") != sandbox.ccid:
            return _failure(401, "Unknown or missing x-ccid")
        if sandbox.api_key is not None and request.headers.get("x-api-key") != sandbox.api_key:
            return _failure(401, "Invalid x-api-key")
        channel = sandbox.channels.get(channel_id) or await sandbox.resolve(channel_id)
        if channel is None:
            return _failure(404, f"Unknown channel {channel_id}")

        def signed_with(channel: SandboxChannel) -> bool:
            match = verify(
                signed or b"",
                request.headers.get(SIGNATURE_HEADER),
                [channel.api_secret],
                sandbox.signature_encoding,
            )
            return match is not None

        if signed is not None and not signed_with(channel):
            # The operator may have rotated the channel's API secret since it was looked up.
            fresh = await sandbox.resolve(channel_id)
            if fresh is None or not signed_with(fresh):
                return _failure(401, "Invalid X-Hub-Signature")
        return None

    async def json_call(kind: str, channel_id: str, request: Request) -> Response:
        body = await request.body()
        refused = await authenticate(request, channel_id, body) or await faulted()
        if refused is not None:
            return refused
        try:
            document = json.loads(body)
        except ValueError:
            return _failure(400, "Body is not JSON")
        sandbox.received.append(
            ReceivedCall(kind, channel_id, dict(request.headers), body, document)
        )
        return _envelope({"id": f"nexus-{uuid.uuid4().hex[:16]}"})

    def route(path: str) -> str:
        return path.replace("{channelId}", "{channel_id}")

    @app.post(route(settings.nexus_messages_path))
    async def messages(channel_id: str, request: Request) -> Response:
        return await json_call("message", channel_id, request)

    @app.post(route(settings.nexus_receipts_path))
    async def receipts(channel_id: str, request: Request) -> Response:
        return await json_call("receipt", channel_id, request)

    @app.post(route(settings.nexus_typing_path))
    async def typing(channel_id: str, request: Request) -> Response:
        return await json_call("typing", channel_id, request)

    @app.post(route(settings.nexus_media_path))
    async def upload(channel_id: str, request: Request) -> Response:
        body = await request.body()
        signed = body if settings.nexus_multipart_signature == "body" else None
        refused = await authenticate(request, channel_id, signed) or await faulted()
        if refused is not None:
            return refused
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return _failure(400, "Form field `file` is required")
        content = await upload.read()
        if settings.nexus_multipart_signature == "file" and not verify(
            content,
            request.headers.get(SIGNATURE_HEADER),
            [sandbox.channels[channel_id].api_secret],
            sandbox.signature_encoding,
        ):
            return _failure(401, "Invalid X-Hub-Signature")
        media_id = str(uuid.uuid4())
        stored = StoredMedia(
            media_id,
            channel_id,
            upload.filename or "file",
            upload.content_type or "application/octet-stream",
            content,
        )
        sandbox.media[media_id] = stored
        sandbox.received.append(ReceivedCall("media", channel_id, dict(request.headers), body))
        return _envelope(
            {
                "mediaId": media_id,
                "url": SYNTHETIC_MEDIA_PREFIX + media_id,
                "filename": stored.filename,
                "mimetype": stored.mimetype,
                "length": len(content),
            }
        )

    @app.get(settings.nexus_media_download_path.replace("{mediaId}", "{media_id}"))
    async def download(media_id: str, request: Request) -> Response:
        if request.headers.get("x-ccid") != sandbox.ccid:
            return _failure(401, "Unknown or missing x-ccid")
        stored = sandbox.media.get(media_id)
        if stored is None:
            return _failure(404, "Unknown media")
        return Response(stored.content, media_type=stored.mimetype)

    @app.post(settings.nexus_provisioning_path)
    async def provision(ccid: str, service: str, request: Request) -> Response:
        if ccid != sandbox.ccid or request.headers.get("x-ccid") != sandbox.ccid:
            return _failure(401, "Unknown or missing x-ccid")
        if sandbox.api_key is not None and request.headers.get("x-api-key") != sandbox.api_key:
            return _failure(401, "Invalid x-api-key")
        try:
            document = json.loads(await request.body())
        except ValueError:
            return _failure(400, "Body is not JSON")
        sandbox.services[service] = document
        if service == "Async":
            for entry in document.get("secret", {}).get("channels", []):
                sandbox.add_channel(
                    entry["channelId"],
                    webhook_secret=entry["webhook"]["secret"],
                    api_secret=entry["api"]["secret"],
                )
        return _envelope({"service": service})

    return app
