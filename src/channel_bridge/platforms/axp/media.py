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
arbitrary host. A download streams into a spool (channel_bridge.media) within the
process's media budget, the size limit enforced as it arrives, and an upload streams from one:
no attachment is ever held whole in memory. Any status of 300 or more on a media call is an
error (redirects are never followed, so a 3xx would otherwise pass for an empty file).
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from contextlib import AbstractAsyncContextManager
from email.message import Message
from urllib.parse import quote, urljoin, urlsplit

import httpx

from channel_bridge.media import DEFAULT_TRANSFERS, MediaSpool, MediaTransfers
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


class AxpMediaStore:
    def __init__(
        self,
        http: httpx.AsyncClient,
        account_id: str,
        base_url: str,
        max_bytes: int,
        *,
        media_store_path: str = DEFAULT_MEDIA_STORE_PATH,
        transfers: MediaTransfers | None = None,
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
        self.transfers = transfers or DEFAULT_TRANSFERS

    # --- upload ------------------------------------------------------------------------

    async def upload(
        self,
        content: bytes | MediaSpool | AsyncIterable[bytes],
        filename: str,
        content_type: str,
    ) -> str:
        """Store a file in the AXP media store; returns its mediaId (the attachmentId)."""
        if isinstance(content, MediaSpool):
            self._check_size(content.size)
            return await self._upload(content, filename, content_type)
        if isinstance(content, bytes | bytearray):
            self._check_size(len(content))
            with MediaSpool.of(bytes(content)) as spool:
                return await self._upload(spool, filename, content_type)
        # The size is needed up front (mediaSize): spool the stream first.
        async with await self.transfers.spool(
            aiter(content), declared=None, limit=self.max_bytes, too_large=self._too_large
        ) as spool:
            return await self._upload(spool, filename, content_type)

    async def _upload(self, spool: MediaSpool, filename: str, content_type: str) -> str:
        size = spool.size
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
            files={"mediaFile": (signed.mediaName, spool.reader(), content_type)},
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

    async def download(self, url: str) -> MediaSpool:
        """A media URL's content in a spool (content type and filename set), at most
        `max_bytes` long; the caller closes it."""
        target = self.resolve(url)
        try:
            async with self._signed_get(target) as response:
                await _raise_unless_2xx(response)
                spool = await self.transfers.spool_response(
                    response, limit=self.max_bytes, too_large=self._too_large
                )
                spool.filename = _filename(response.headers.get("content-disposition"))
        except httpx.TransportError as exc:
            raise error_from_transport(exc, operation="media download") from exc
        return spool

    # --- helpers -----------------------------------------------------------------------

    def _signed_get(self, url: str) -> AbstractAsyncContextManager[httpx.Response]:
        """GET a signed media URL without our credentials (spec: no security on it)."""
        return self._http.stream("GET", url, headers={"accept": "*/*"}, auth=None)

    def _check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise self._too_large(size)

    def _too_large(self, size: int) -> AxpPermanentError:
        return AxpPermanentError(
            f"AXP media of {size} bytes exceeds BRIDGE_AXP_MEDIA_MAX_BYTES ({self.max_bytes} bytes)"
        )

    async def _send(
        self, method: str, url: str, *, operation: str, **kwargs: object
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise error_from_transport(exc, operation=operation) from exc
        if response.status_code >= 300:
            raise error_from_response(response, operation=operation)
        if method == "POST" and response.status_code not in (200, 201, 202):
            raise AxpRetryableError(
                f"AXP {operation} answered unexpected HTTP {response.status_code}"
            )
        return response


async def _raise_unless_2xx(response: httpx.Response) -> None:
    # A 3xx is no file: redirects are not followed, and its (empty) body is not the media.
    if response.status_code >= 300:
        await response.aread()
        raise error_from_response(response, operation="media download")


def _filename(content_disposition: str | None) -> str | None:
    if not content_disposition:
        return None
    message = Message()
    message["content-disposition"] = content_disposition
    name = message.get_filename()
    return name or None
