"""Third-Party Messaging API client: the bridge -> Digital Channels direction.

Every JSON body is serialised once; those exact bytes are signed and sent.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import quote, urlsplit

import httpx
from pydantic import SecretStr, ValidationError

from channel_bridge.ids import random_hex_id
from channel_bridge.media import MediaSpool, MediaTransfers
from channel_bridge.ops.logging import get_logger
from channel_bridge.outbound import post_small
from channel_bridge.platforms.nexus.errors import (
    NexusApiError,
    NexusConfigError,
    NexusRejectedError,
    NexusRetryableError,
    NexusThrottledError,
    error_for_response,
)
from channel_bridge.platforms.nexus.schemas import Envelope, UploadResult
from channel_bridge.platforms.nexus.signing import SIGNATURE_HEADER, sign, sign_chunks
from channel_bridge.settings import Settings

log = get_logger(__name__)

TRACE_HEADER = "X-B3-TraceId"
CCID_HEADER = "x-ccid"
API_KEY_HEADER = "x-api-key"
# (read) the synthetic URL Nexus hands out for uploaded media.
SYNTHETIC_MEDIA_PREFIX = "genesys://nexus/"
# B3 trace ids are 64 or 128 bit lowercase hex; anything else is replaced, never forwarded.
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{16}(?:[0-9a-fA-F]{16})?$")


def safe_trace_id(value: str | None) -> str:
    """`value` if it is a valid B3 trace id, else a fresh 128-bit one."""
    if value and _TRACE_ID.match(value):
        return value.lower()
    return random_hex_id()


def encode_json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class NexusClient:
    """Signed calls to BRIDGE_NEXUS_BASE_URL with x-ccid, X-B3-TraceId and x-api-key headers."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: Settings,
        *,
        transfers: MediaTransfers | None = None,
    ) -> None:
        self._http = http
        self._settings = settings
        self._transfers = transfers or MediaTransfers.from_settings(settings)

    # --- calls ------------------------------------------------------------------------

    async def post_to_nexus(
        self,
        channel_id: str,
        api_secret: SecretStr,
        message: dict[str, Any],
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """Deliver a customer message to Digital Channels; returns the response `data` (or body)."""
        return await self._post_json(
            "send message",
            self._settings.nexus_messages_path,
            channel_id,
            api_secret,
            message,
            trace_id,
        )

    async def send_receipt(
        self,
        channel_id: str,
        api_secret: SecretStr,
        receipt: dict[str, Any],
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """Report a delivery receipt for a message Nexus sent us (provisional path)."""
        return await self._post_json(
            "send receipt",
            self._settings.nexus_receipts_path,
            channel_id,
            api_secret,
            receipt,
            trace_id,
        )

    async def send_typing(
        self,
        channel_id: str,
        api_secret: SecretStr,
        indicator: dict[str, Any],
        trace_id: str | None = None,
    ) -> dict[str, Any] | None:
        """Forward a typing indicator; a no-op (None) unless BRIDGE_NEXUS_TYPING_ENABLED."""
        if not self._settings.nexus_typing_enabled:
            return None
        return await self._post_json(
            "send typing",
            self._settings.nexus_typing_path,
            channel_id,
            api_secret,
            indicator,
            trace_id,
        )

    async def upload_media(
        self,
        channel_id: str,
        api_secret: SecretStr,
        content: bytes | MediaSpool,
        filename: str,
        content_type: str,
        trace_id: str | None = None,
    ) -> UploadResult:
        """(read) `POST /channels/{channelId}/media` with form field `file`, from the spool."""
        spool = MediaSpool.of(content) if isinstance(content, bytes) else content
        if spool.size > self._settings.nexus_media_max_bytes:
            raise NexusRejectedError(
                f"media of {spool.size} bytes exceeds BRIDGE_NEXUS_MEDIA_MAX_BYTES"
            )
        url = self._url(self._settings.nexus_media_path, channelId=channel_id)
        # One request, one boundary: the multipart body is streamed from the spool once to
        # sign it and once more on the wire, so what is signed is exactly what is sent.
        request = self._http.build_request(
            "POST", url, files={"file": (filename, spool.reader(), content_type)}
        )
        mode = self._settings.nexus_multipart_signature
        encoding = _wire_encoding(self._settings.nexus_signature_encoding)
        signature = (
            sign_chunks(cast(Iterable[bytes], request.stream), api_secret, encoding)
            if mode == "body"
            else sign_chunks(spool.chunks(), api_secret, encoding)
            if mode == "file"
            else None
        )
        request.headers.update(
            self._headers(signature, api_secret, trace_id, request.headers["content-type"])
        )
        response = await self._send_request("upload media", request)
        data = self._data(response.content)
        try:
            return UploadResult.model_validate(data)
        except ValidationError as exc:
            raise NexusRejectedError(
                "Nexus upload media answered without data.mediaId/data.url",
                http_status=response.status_code,
                response_excerpt=response.text[:500],
            ) from exc

    async def fetch_media(self, url: str) -> MediaSpool:
        """Download media Nexus referenced, only from the configured Nexus host, size-limited,
        into a spool (the caller closes it)."""
        target = self._media_url(url)
        limit = self._settings.nexus_media_max_bytes
        headers = {CCID_HEADER: self._settings.nexus_ccid or ""}
        if self._settings.nexus_api_key is not None:
            headers[API_KEY_HEADER] = self._settings.nexus_api_key.get_secret_value()
        try:
            async with self._http.stream("GET", target, headers=headers) as response:
                if response.status_code >= 300:
                    await response.aread()
                    raise error_for_response(response, "fetch media")
                return await self._transfers.spool_response(
                    response,
                    limit=limit,
                    too_large=lambda size: NexusRejectedError(
                        f"media of {size} bytes exceeds BRIDGE_NEXUS_MEDIA_MAX_BYTES "
                        f"({limit} bytes)"
                    ),
                )
        except httpx.TimeoutException as exc:
            raise NexusThrottledError(f"Nexus fetch media timed out: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise NexusRetryableError(f"Nexus fetch media failed: {type(exc).__name__}") from exc

    # --- plumbing ---------------------------------------------------------------------

    def _base_url(self) -> str:
        if not self._settings.nexus_base_url:
            raise NexusConfigError("BRIDGE_NEXUS_BASE_URL is not set")
        return self._settings.nexus_base_url.rstrip("/")

    def _url(self, template: str, **params: str) -> str:
        # "+" (E.164) and "@" are legal in a path segment; "/" and the rest are escaped.
        quoted = {name: quote(value, safe="+@") for name, value in params.items()}
        return self._base_url() + template.format_map(quoted)

    def _media_url(self, url: str) -> str:
        if url.startswith(SYNTHETIC_MEDIA_PREFIX):
            media_id = url[len(SYNTHETIC_MEDIA_PREFIX) :]
            if not media_id or "/" in media_id:
                raise NexusConfigError("malformed synthetic media URL")
            return self._url(self._settings.nexus_media_download_path, mediaId=media_id)
        parts = urlsplit(url)
        nexus = urlsplit(self._base_url())
        # The x-api-key goes with the request: never to a host other than Nexus itself.
        if parts.scheme not in ("http", "https") or (parts.scheme, parts.netloc.lower()) != (
            nexus.scheme,
            nexus.netloc.lower(),
        ):
            raise NexusConfigError("media URL is not on the configured Nexus host; not fetched")
        return url

    def _headers(
        self,
        signature: str | None,
        api_secret: SecretStr,
        trace_id: str | None,
        content_type: str,
    ) -> dict[str, str]:
        if not self._settings.nexus_ccid:
            raise NexusConfigError("BRIDGE_NEXUS_CCID is not set")
        if not api_secret.get_secret_value():
            raise NexusConfigError("the channel has no Nexus API secret")
        headers = {
            "Content-Type": content_type,
            CCID_HEADER: self._settings.nexus_ccid,
            TRACE_HEADER: safe_trace_id(trace_id),
        }
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        if (
            self._settings.nexus_api_key is not None
            and self._settings.nexus_api_key.get_secret_value()
        ):
            headers[API_KEY_HEADER] = self._settings.nexus_api_key.get_secret_value()
        return headers

    async def _post_json(
        self,
        operation: str,
        template: str,
        channel_id: str,
        api_secret: SecretStr,
        document: dict[str, Any],
        trace_id: str | None,
    ) -> dict[str, Any]:
        url = _parsed_url(self._url(template, channelId=channel_id))
        body = encode_json(document)
        signature = sign(body, api_secret, _wire_encoding(self._settings.nexus_signature_encoding))
        headers = self._headers(signature, api_secret, trace_id, "application/json")
        # The relay's hot send (every agent message): past httpx's client layer, as AXP's
        # send message is (outbound.post_small); the request is signed, not authenticated.
        try:
            status, content, response_headers = await post_small(
                self._http, url, headers=headers, body=body
            )
        except httpx.TransportError as exc:
            raise _transport_error(operation, exc) from exc
        log.info("nexus call", operation=operation, status=status, trace_id=headers[TRACE_HEADER])
        if status >= 300:
            response = httpx.Response(
                status,
                headers=response_headers,
                content=content,
                request=httpx.Request("POST", url),
            )
            raise error_for_response(response, operation)
        data = self._data(content)
        return data if isinstance(data, dict) else {"data": data}

    async def _send_request(self, operation: str, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            raise _transport_error(operation, exc) from exc
        log.info(
            "nexus call",
            operation=operation,
            status=response.status_code,
            trace_id=request.headers.get(TRACE_HEADER),
        )
        if response.status_code >= 300:
            raise error_for_response(response, operation)
        return response

    @staticmethod
    def _data(content: bytes) -> Any:
        """A 2xx answer's `data` (Nexus's envelope), else the document, else an excerpt."""
        if not content:
            return {}
        try:
            document = json.loads(content)
        except ValueError:
            return {"body": content.decode("utf-8", "replace")[:2048]}
        if isinstance(document, dict) and ("status" in document or "data" in document):
            try:
                envelope = Envelope.model_validate(document)
            except ValidationError:
                return document
            return envelope.data if envelope.data is not None else {}
        return document


# A channel's send URL is the same on every message; parsing it again was 4 % of a relayed
# agent message's CPU (performance.md, eleventh round). Bounded: a few URLs per channel.
_parsed_url = functools.lru_cache(maxsize=4096)(httpx.URL)


def _transport_error(operation: str, exc: httpx.TransportError) -> NexusApiError:
    """A timeout is throttling (given time before the next try); any other failure to get an
    answer is retried on the schedule."""
    if isinstance(exc, httpx.TimeoutException):
        return NexusThrottledError(f"Nexus {operation} timed out: {type(exc).__name__}")
    return NexusRetryableError(f"Nexus {operation} failed: {type(exc).__name__}")


def _wire_encoding(setting: str) -> Any:
    # `auto` only makes sense for checking; what we send uses the conventional hex.
    return "base64" if setting == "base64" else "hex"


__all__ = ["NexusApiError", "NexusClient", "encode_json", "safe_trace_id"]
