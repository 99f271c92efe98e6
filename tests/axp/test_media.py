"""Media store: signed upload; download from the AXP host only, size limit while streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import httpx
import pytest
import respx

from channel_bridge.media import MediaSpool
from channel_bridge.platforms.axp.media import AxpMediaStore
from channel_bridge.platforms.axp.platform import AxpPlatform
from channel_bridge.relay.errors import PermanentError
from channel_bridge.sandbox.axp import AxpSimulator
from tests.axp.conftest import ACCOUNT_ID, AXP_BASE_URL, validate_against


async def test_upload_asks_for_a_signed_uri_then_posts_media_file(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    media_id = await platform.media.upload(b"brochure-bytes", "brochure.pdf", "application/pdf")
    signed, upload = sim.recorded()
    assert signed.method == "POST"
    assert signed.path == f"/api/media-store/v1/accounts/{ACCOUNT_ID}/media/signed-upload-uri"
    assert signed.json == {
        "mediaName": "brochure.pdf",
        "mediaContentType": "application/pdf",
        "mediaSize": 14,
    }
    validate_against("signed_media_upload_request.schema.json", signed.json)
    assert upload.path == f"/api/media-store/v1/media/{media_id}"
    assert "authorization" not in upload.headers  # the signed URI is the authorisation
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert b'name="mediaFile"; filename="brochure.pdf"' in upload.body
    assert sim.media[media_id]["content"] == b"brochure-bytes"


async def test_upload_from_a_stream_is_spooled_and_sized(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    media_id = await platform.media.upload(chunks(), "big.bin", "application/octet-stream")
    assert sim.recorded()[0].json["mediaSize"] == 10_000
    assert sim.media[media_id]["content"] == b"x" * 10_000


async def content_of(spool_coroutine: Awaitable[MediaSpool]) -> bytes:
    with await spool_coroutine as spool:
        return spool.read()


async def test_upload_above_the_limit_is_refused_before_any_request(sim: AxpSimulator) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url=AXP_BASE_URL
    ) as http:
        store = AxpMediaStore(http, ACCOUNT_ID, AXP_BASE_URL, max_bytes=100)
        with pytest.raises(PermanentError):
            await store.upload(b"x" * 101, "a.bin", "application/octet-stream")
    assert sim.requests == []


async def test_download_resolves_relative_signed_urls(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    media_id = sim.store_media(b"picture", name="my-picture.png", content_type="image/png")
    with await platform.media.download(sim.signed_media_path(media_id)) as spool:
        assert (spool.read(), spool.content_type, spool.filename) == (
            b"picture",
            "image/png",
            "my-picture.png",
        )
    assert sim.recorded()[-1].path == f"/api/media-store/v1/media/{media_id}"


async def test_signed_downloads_carry_no_credentials(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    """The spec declares no security on the signed media URL; object storage behind a
    presigned URL refuses a request with a second authentication method."""
    media_id = sim.store_media(b"picture", name="p.png", content_type="image/png")
    path = sim.signed_media_path(media_id)
    assert await content_of(platform.media.download(path)) == b"picture"
    (download,) = sim.recorded(method="GET", path_contains="/v1/media/")
    assert "authorization" not in download.headers and "appkey" not in download.headers
    # The authenticated media-store API still authenticates.
    await platform.media.signed_download_uri(media_id)
    (api_call,) = sim.recorded(path_contains="/signed-download-uri")
    assert api_call.headers["authorization"].startswith("Bearer ") and api_call.headers["appkey"]


@pytest.mark.parametrize(
    "credentials",
    [
        {"Authorization": "Bearer t0ken"},
        {"appkey": "k"},
        {"Authorization": "Bearer t", "appkey": "k"},
    ],
)
async def test_the_simulator_refuses_a_signed_url_with_credentials(
    sim: AxpSimulator, credentials: dict[str, str]
) -> None:
    media_id = sim.store_media(b"picture", name="p.png", content_type="image/png")
    url = f"{AXP_BASE_URL}/api/media-store{sim.signed_media_path(media_id)}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as http:
        refused = await http.get(url, headers=credentials)
        upload = await http.post(url, headers=credentials, files={"mediaFile": ("p", b"x")})
        plain = await http.get(url)
    assert refused.status_code == 400 and "Authorization or appkey" in refused.json()["detail"]
    assert upload.status_code == 400
    assert (plain.status_code, plain.content) == (200, b"picture")


async def test_download_accepts_absolute_urls_on_the_axp_host(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    media_id = sim.store_media(b"doc", name="d.txt", content_type="text/plain")
    url = f"{AXP_BASE_URL}/api/media-store{sim.signed_media_path(media_id)}"
    assert await content_of(platform.media.download(url)) == b"doc"
    fresh = await platform.media.signed_download_uri(media_id)
    assert fresh.startswith(f"/v1/media/{media_id}?ttl=")
    assert await content_of(platform.media.download(fresh)) == b"doc"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/api/media-store/v1/media/abc?ttl=1&signature=x",
        "https://na.api.axp.test.evil.example.com/v1/media/abc",
        "http://na.api.axp.test/api/media-store/v1/media/abc",  # downgrade to plain http
        "//evil.example.com/v1/media/abc",
    ],
)
@respx.mock(assert_all_called=False)
async def test_download_refuses_another_host_before_any_request(
    url: str, respx_mock: respx.MockRouter
) -> None:
    anything = respx_mock.route().mock(return_value=httpx.Response(200, content=b"stolen"))
    async with httpx.AsyncClient(base_url=AXP_BASE_URL) as http:
        store = AxpMediaStore(http, ACCOUNT_ID, AXP_BASE_URL, max_bytes=1000)
        with pytest.raises(PermanentError, match="not the configured AXP host"):
            await store.download(url)
    assert anything.call_count == 0


@respx.mock
async def test_download_limit_is_enforced_while_streaming(respx_mock: respx.MockRouter) -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for n in range(1000):
            sent.append(n)
            yield b"y" * 100

    respx_mock.get(f"{AXP_BASE_URL}/api/media-store/v1/media/m1").mock(
        return_value=httpx.Response(200, stream=_Stream(endless()))
    )
    async with httpx.AsyncClient(base_url=AXP_BASE_URL) as http:
        store = AxpMediaStore(http, ACCOUNT_ID, AXP_BASE_URL, max_bytes=1000)
        with pytest.raises(PermanentError, match="BRIDGE_AXP_MEDIA_MAX_BYTES"):
            await store.download("/v1/media/m1")
    assert len(sent) < 20  # stopped right after the limit, not after reading everything


@respx.mock
async def test_declared_oversize_is_refused_from_the_header(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{AXP_BASE_URL}/api/media-store/v1/media/m2").mock(
        return_value=httpx.Response(200, content=b"z" * 2000)
    )
    async with httpx.AsyncClient(base_url=AXP_BASE_URL) as http:
        store = AxpMediaStore(http, ACCOUNT_ID, AXP_BASE_URL, max_bytes=1000)
        with pytest.raises(PermanentError):
            await store.download("/v1/media/m2")


@pytest.mark.parametrize("status", [301, 302, 303, 304, 307, 308])
@respx.mock
async def test_a_redirect_on_a_media_download_is_an_error_not_an_empty_file(
    status: int, respx_mock: respx.MockRouter
) -> None:
    respx_mock.get(f"{AXP_BASE_URL}/api/media-store/v1/media/m3").mock(
        return_value=httpx.Response(status, headers={"location": "https://elsewhere.test/x"})
    )
    async with httpx.AsyncClient(base_url=AXP_BASE_URL) as http:
        store = AxpMediaStore(http, ACCOUNT_ID, AXP_BASE_URL, max_bytes=1000)
        with pytest.raises(PermanentError, match=f"HTTP {status}"):
            await store.download("/v1/media/m3")


async def test_a_large_download_is_spooled_to_disk_and_uploaded_from_the_spool(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    content = bytes(range(256)) * 12_000  # 3 MB: past the 1 MiB spool threshold
    media_id = sim.store_media(content, name="video.mp4", content_type="video/mp4")
    async with await platform.media.download(sim.signed_media_path(media_id)) as spool:
        assert spool.on_disk and spool.size == len(content)
        uploaded = await platform.media.upload(spool, "copy.mp4", "video/mp4")
    assert sim.media[uploaded]["content"] == content
    [signed] = [r for r in sim.recorded() if r.path.endswith("/signed-upload-uri")]
    assert signed.json["mediaSize"] == len(content)


async def test_expired_signature_is_a_permanent_error(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    media_id = sim.store_media(b"old", name="o.txt", content_type="text/plain")
    with pytest.raises(PermanentError) as caught:
        await platform.media.download(sim.signed_media_path(media_id, ttl_ms=1))
    assert "ttl: has expired" in str(caught.value)


class _Stream(httpx.AsyncByteStream):
    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._source:
            yield chunk
