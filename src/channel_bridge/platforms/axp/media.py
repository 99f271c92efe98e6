"""AXP media store (Signed Media URI 1.0.1 + Signed Media 1.0.1): upload and download.

Upload: `POST /api/media-store/v1/accounts/{accountId}/media/signed-upload-uri` returns a
signed URI; the file goes there as multipart field `mediaFile` (no token: the URI is signed)
and the answer's `mediaId` is what a message lists as `attachments[].attachmentId`.

Download: callbacks carry signed URLs relative to the media store
(`/v1/media/{id}?ttl=…&signature=…`), resolved against `{base}/api/media-store`. The signed
media operations declare no security, so neither direction sends the bearer token or the
app key: the signature authorises the request, and object storage behind a presigned URL
refuses a request that carries a second authentication method. An absolute URL is fetched
only when its host is the configured AXP host, so a callback can never make us fetch from an
arbitrary host. The size limit is enforced while the body streams in, so an oversize file is
never buffered whole.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from email.message import Message
from typing import IO
from urllib.parse import quote, urljoin, urlsplit

import httpx

from channel_bridge.platforms.axp.errors import (
    AxpPermanentError,
    AxpRetryableError,
    error_from_response,
    error_from_transport,
)
from channel_bridge.platforms.axp.schemas import (
    SignedMediaDownload,
    SignedMediaUpload,
    SignedMediaUploadRequest,
    UploadMediaResponse,
)

# Where relative signed URLs live (inferred from the spec servers; a setting documents it).
DEFAULT_MEDIA_STORE_PATH = "/api/media-store"
# Uploads from an async iterator are spooled (size is needed up front); RAM use is capped here.
SPOOL_IN_MEMORY_BYTES = 1024 * 1024


class AxpMediaStore:
    def __init__(
        self,
        http: httpx.AsyncClient,
        account_id: str,
        base_url: str,
        max_bytes: int,
        *,
        media_store_path: str = DEFAULT_MEDIA_STORE_PATH,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        base = urlsplit(self._base_url)
        if not base.scheme or not base.hostname:
            raise ValueError(f"AXP base URL must be absolute, got {base_url!r}")
        self._scheme = base.scheme
        self._netloc = base.netloc.lower()
        self._media_root = self._base_url + "/" + media_store_path.strip("/")
        self._account_path = f"{self._media_root}/v1/accounts/{quote(account_id, safe='')}"
        self.max_bytes = max_bytes

    # --- upload ------------------------------------------------------------------------

    async def upload(
        self,
        content: bytes | AsyncIterable[bytes],
        filename: str,
        content_type: str,
    ) -> str:
        """Store a file in the AXP media store; returns its mediaId (the attachmentId)."""
        if isinstance(content, bytes | bytearray):
            self._check_size(len(content))
            return await self._upload(bytes(content), len(content), filename, content_type)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as spool:
            size = 0
            async for chunk in content:
                size += len(chunk)
                self._check_size(size)
                spool.write(chunk)
            spool.seek(0)
            return await self._upload(spool, size, filename, content_type)

    async def _upload(
        self, content: bytes | IO[bytes], size: int, filename: str, content_type: str
    ) -> str:
        if size < 1:
            raise AxpPermanentError("AXP media upload refused locally: the file is empty")
        signed = SignedMediaUploadRequest(
            mediaName=filename[:255] or "attachment", mediaContentType=content_type, mediaSize=size
        )
        response = await self._send(
            "POST",
            f"{self._account_path}/media/signed-upload-uri",
            operation="signed upload uri",
            json=signed.to_wire(),
        )
        target = SignedMediaUpload.model_validate(response.json())
        upload_url = self.resolve(target.uploadSignedUri)
        # The signed URI authorises the upload; no bearer token is sent with it (spec: no security).
        uploaded = await self._send(
            "POST",
            upload_url,
            operation="media upload",
            auth=None,
            files={"mediaFile": (signed.mediaName, content, content_type)},
        )
        try:
            answer = UploadMediaResponse.model_validate(uploaded.json())
        except ValueError:
            answer = UploadMediaResponse()
        return answer.mediaId or target.mediaId

    async def signed_download_uri(self, media_id: str) -> str:
        """A fresh signed download URL for a mediaId (callback URLs expire: `ttl` is epoch ms)."""
        response = await self._send(
            "GET",
            f"{self._account_path}/media/{quote(media_id, safe='')}/signed-download-uri",
            operation="signed download uri",
        )
        return SignedMediaDownload.model_validate(response.json()).downloadSignedUri

    # --- download ----------------------------------------------------------------------

    def resolve(self, url: str) -> str:
        """An absolute URL on the AXP host, or AxpPermanentError before any request is made."""
        parts = urlsplit(url)
        if not parts.scheme and not parts.netloc:
            return urljoin(self._media_root + "/", url.lstrip("/"))
        scheme_ok = parts.scheme.lower() in ("https", self._scheme)
        if not scheme_ok or parts.netloc.lower() != self._netloc:
            raise AxpPermanentError(
                f"AXP media URL refused: host {parts.hostname or '?'} "
                "is not the configured AXP host"
            )
        return url

    async def download(self, url: str) -> tuple[bytes, str | None, str | None]:
        """(content, content type, filename) of a media URL, at most `max_bytes` long."""
        target = self.resolve(url)
        chunks: list[bytes] = []
        try:
            async with self._signed_get(target) as response:
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response, operation="media download")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit():
                    self._check_size(int(declared))
                received = 0
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    self._check_size(received)
                    chunks.append(chunk)
                content_type = response.headers.get("content-type")
                filename = _filename(response.headers.get("content-disposition"))
        except httpx.TransportError as exc:
            raise error_from_transport(exc, operation="media download") from exc
        return b"".join(chunks), content_type, filename

    async def iter_download(self, url: str) -> AsyncIterator[bytes]:
        """The media as chunks, for relaying without holding it whole (limit enforced)."""
        target = self.resolve(url)
        async with self._signed_get(target) as response:
            if response.is_error:
                await response.aread()
                raise error_from_response(response, operation="media download")
            received = 0
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                self._check_size(received)
                yield chunk

    # --- helpers -----------------------------------------------------------------------

    def _signed_get(self, url: str) -> AbstractAsyncContextManager[httpx.Response]:
        """GET a signed media URL without our credentials (spec: no security on it)."""
        return self._http.stream("GET", url, headers={"accept": "*/*"}, auth=None)

    def _check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise AxpPermanentError(
                f"AXP media exceeds BRIDGE_AXP_MEDIA_MAX_BYTES ({self.max_bytes} bytes)"
            )

    async def _send(
        self, method: str, url: str, *, operation: str, **kwargs: object
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise error_from_transport(exc, operation=operation) from exc
        if response.is_error:
            raise error_from_response(response, operation=operation)
        if method == "POST" and response.status_code not in (200, 201, 202):
            raise AxpRetryableError(
                f"AXP {operation} answered unexpected HTTP {response.status_code}"
            )
        return response


def _filename(content_disposition: str | None) -> str | None:
    if not content_disposition:
        return None
    message = Message()
    message["content-disposition"] = content_disposition
    name = message.get_filename()
    return name or None
