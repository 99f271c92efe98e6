"""Outbound HTTP: every client the bridge uses to call an upstream, and the transport under it.

The clients keep the httpx API (the platform clients, httpx.Auth, respx and the in-process
simulators all speak it); the transport under them is aiohttp's connection pool, chosen by
measurement (bench/forwarder_bench.py, docs/performance.md). httpx 0.28's own pool (httpcore
1.0) scans every pooled connection on each request start and finish, which grows with the
square of the connections in use: against a 10 ms upstream at 64 in flight a bare httpx
forwarder made 281 sends/s at 3.1 ms of CPU each, the same httpx client on aiohttp's pool
1,383/s at 0.62 ms, and aiohttp alone 4,192/s at 0.20 ms (one run, medians of 3).

`AiohttpTransport` is the bridge's own adapter rather than the `httpx-aiohttp` package's,
whose measured behaviour would misclassify failures here: it maps every aiohttp connection
error (refused, reset, a keep-alive connection closed by the server) to `ConnectTimeout`,
which the clients treat as throttling; it has no write timeout (a stalled media upload hung
until the server gave up); and it lets yarl re-encode paths (`%3A` became `:`). This one maps
each aiohttp failure to the httpx error of the same meaning, bounds a request's send and
wait for the answer by the sum of its timeouts, keeps the URL byte for byte, ignores cookies
(the httpx client keeps its own) and takes proxies from HTTP(S)_PROXY / NO_PROXY as httpx
does (but never credentials from ~/.netrc, which aiohttp's `trust_env` would add).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpx
import yarl

from channel_bridge import __version__
from channel_bridge.settings import Settings

# Responses this small are read at once instead of streamed: one buffer, no chunk iterator.
_READ_AT_ONCE_BYTES = 64 * 1024
_CHUNK_BYTES = 64 * 1024


def client_limits(settings: Settings) -> httpx.Limits:
    return httpx.Limits(
        max_connections=settings.http_max_connections,
        max_keepalive_connections=settings.http_max_connections,
        keepalive_expiry=settings.http_keepalive_s,
    )


def client_timeout(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(settings.http_timeout_s, connect=settings.http_connect_timeout_s)


def build_transport(settings: Settings) -> httpx.AsyncBaseTransport:
    """The transport for one upstream's client (its own pool, `http_max_connections`)."""
    if settings.http_transport == "httpx":
        return httpx.AsyncHTTPTransport(limits=client_limits(settings))
    return AiohttpTransport(limits=client_limits(settings))


def build_client(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    client_class: type[httpx.AsyncClient] = httpx.AsyncClient,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An httpx client with the bridge's timeouts, limits and user agent; redirects never
    followed (an upstream that redirects is answering something we did not ask)."""
    headers = {"user-agent": f"channel-bridge/{__version__}", **kwargs.pop("headers", {})}
    return client_class(
        transport=transport or build_transport(settings),
        timeout=client_timeout(settings),
        headers=headers,
        follow_redirects=False,
        **kwargs,
    )


async def post_small(
    client: httpx.AsyncClient,
    url: httpx.URL,
    *,
    headers: Mapping[str, str],
    body: bytes,
    timeouts: dict[str, Any] | None = None,
) -> tuple[int, bytes, httpx.Headers]:
    """POST a small body through `client`'s transport and read the whole answer: (status,
    body, headers), with the client's default headers under `headers`.

    The hot sends' shortcut (AXP's send message, Nexus's send message): it skips what httpx's
    client adds around a request (URL merging, the auth-flow generator, redirect and cookie
    handling), which measured about as much CPU as the request on the aiohttp pool. So no
    auth, cookies or redirects: the caller authenticates (a token, a signature) and treats a
    3xx as the error it is. Failures are the httpx errors `client.send` would raise.
    """
    request_headers = dict(client.headers)
    request_headers.update((name.lower(), value) for name, value in headers.items())
    timeouts = client.timeout.as_dict() if timeouts is None else timeouts
    # The transport the client would pick for this URL (its mounts, and what respx patches
    # in tests): the one private httpx method used here.
    transport = client._transport_for_url(url)
    if isinstance(transport, AiohttpTransport):
        return await transport.post(url, headers=request_headers, body=body, timeouts=timeouts)
    response = await transport.handle_async_request(
        httpx.Request(
            "POST", url, headers=request_headers, content=body, extensions={"timeout": timeouts}
        )
    )
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response.status_code, response.content, response.headers


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent through one `aiohttp.ClientSession` (created on first use)."""

    def __init__(self, *, limits: httpx.Limits, verify: bool = True) -> None:
        self._limits = limits
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._proxies = urllib.request.getproxies_environment()

    def _proxy_for(self, url: httpx.URL) -> str | None:
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if not self._proxies or bypass(url.host, self._proxies):
            return None
        return self._proxies.get(url.scheme)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 5.0,
                ssl=self._verify,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # httpx decodes by Content-Encoding itself
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        data: Any
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = request.stream
        headers = [(k, v) for k, v in request.headers.multi_items() if k != "transfer-encoding"]
        # aiohttp has no write timeout: the whole send and the wait for the answer's head are
        # bounded by the sum of the request's timeouts instead.
        deadline = sum(value for value in timeout.values() if value) or None
        try:
            async with asyncio.timeout(deadline):
                response = await self._client().request(
                    request.method,
                    yarl.URL(str(request.url), encoded=True),
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    compress=None,
                    timeout=_aiohttp_timeout(timeout),
                    server_hostname=request.extensions.get("sni_hostname"),
                    proxy=self._proxy_for(request.url),
                )
                length = response.content_length
                body = (
                    await response.read()
                    if length is not None and length <= _READ_AT_ONCE_BYTES
                    else None
                )
        except Exception as exc:
            mapped = httpx_error(exc, request, sending=True)
            if mapped is None:
                raise
            raise mapped from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        if body is not None:
            response.release()
            return httpx.Response(
                response.status,
                headers=response.raw_headers,
                content=body,
                request=request,
                extensions=extensions,
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response, request),
            request=request,
            extensions=extensions,
        )

    async def post(
        self, url: httpx.URL, *, headers: dict[str, str], body: bytes, timeouts: dict[str, Any]
    ) -> tuple[int, bytes, httpx.Headers]:
        """POST a small body and read the whole answer: (status, body, headers).

        The hot path's shortcut past httpx's request and response objects (a fifth of a
        send's CPU here); it fails with the same httpx errors as `handle_async_request`.
        """
        deadline = sum(value for value in timeouts.values() if value) or None
        try:
            async with asyncio.timeout(deadline):
                async with self._client().post(
                    yarl.URL(str(url), encoded=True),
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    timeout=_aiohttp_timeout(timeouts),
                    proxy=self._proxy_for(url),
                ) as response:
                    content = await response.read()
                    return response.status, content, httpx.Headers(response.raw_headers)
        except Exception as exc:
            mapped = httpx_error(exc, httpx.Request("POST", url), sending=True)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _aiohttp_timeout(timeouts: dict[str, Any]) -> aiohttp.ClientTimeout:
    """httpx's timeouts as aiohttp's: its `connect` covers waiting for a pooled connection."""
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeouts.get("pool"),
        sock_connect=timeouts.get("connect"),
        sock_read=timeouts.get("read"),
    )


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK_BYTES):
                yield chunk
        except Exception as exc:
            mapped = httpx_error(exc, self._request, sending=False)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        self._response.release()


def httpx_error(
    exc: BaseException, request: httpx.Request, *, sending: bool
) -> httpx.TransportError | None:
    """The httpx error that means what this aiohttp failure means; None if it is not one."""
    message = str(exc) or type(exc).__name__
    error: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        error = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        error = httpx.ReadTimeout
    elif isinstance(exc, TimeoutError):
        # Our own deadline on the send (aiohttp raises its own classes for the others).
        error = httpx.WriteTimeout if sending else httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = httpx.ConnectError
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        error = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientPayloadError):
        error = httpx.ReadError
    elif isinstance(exc, aiohttp.InvalidURL):
        error = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.ClientResponseError):
        error = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientOSError | ConnectionError):
        error = httpx.WriteError if sending else httpx.ReadError
    elif isinstance(exc, aiohttp.ClientError):
        error = httpx.NetworkError
    else:
        return None
    return error(message, request=request)
