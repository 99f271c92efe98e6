"""The outbound transport against real sockets: each aiohttp failure surfaces as the httpx
error of the same meaning, timeouts bound a send, URLs travel byte for byte, bodies stream
both ways, and the hot paths past httpx's client layer (AXP's post_json, Nexus's send message)
behave as the full client does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from pydantic import SecretStr

from channel_bridge.outbound import AiohttpTransport, build_client
from channel_bridge.platforms.axp.errors import AxpAuthError, AxpRetryableError
from channel_bridge.platforms.axp.platform import AxpPlatform
from channel_bridge.platforms.nexus.client import NexusClient
from channel_bridge.platforms.nexus.errors import NexusRetryableError, NexusThrottledError
from channel_bridge.platforms.nexus.signing import verify
from channel_bridge.sandbox.axp import AxpSimulator
from channel_bridge.settings import Settings
from tests.support.servers import LoopbackServer

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A TCP server on loopback whose every connection `handler` serves by hand."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return head


def client(**settings: object) -> httpx.AsyncClient:
    return build_client(Settings(env="dev", **settings))  # type: ignore[arg-type]


async def test_the_default_transport_is_aiohttps() -> None:
    async with client() as http:
        assert isinstance(http._transport, AiohttpTransport)
    async with client(http_transport="httpx") as http:
        assert isinstance(http._transport, httpx.AsyncHTTPTransport)


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with raw_server(lambda r, w: asyncio.sleep(0)) as url:
        pass  # closed: nothing listens on that port any more
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url)


async def test_a_server_that_hangs_up_after_the_request_is_a_remote_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async with raw_server(hang_up) as url, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, content=b"{}")


async def test_a_body_cut_short_is_a_read_error() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.transport.abort()

    async with raw_server(cut) as url, client() as http:
        with pytest.raises(httpx.ReadError):
            await http.get(url)


async def test_no_answer_within_the_read_timeout_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with raw_server(silent) as url, client(http_timeout_s=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url)


async def test_an_upload_the_server_never_reads_is_a_write_timeout() -> None:
    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def endless() -> AsyncIterator[bytes]:
        chunk = b"x" * 65536
        for _ in range(2000):  # far more than the socket buffers hold
            yield chunk

    async with (
        raw_server(never_reads) as url,
        client(http_timeout_s=0.3, http_connect_timeout_s=0.3) as http,
    ):
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.WriteTimeout):
            await http.post(url, content=endless())
        assert asyncio.get_running_loop().time() - started < 5


async def test_the_path_and_query_travel_byte_for_byte() -> None:
    seen: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append((await read_request(reader)).split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    async with raw_server(echo) as url, client() as http:
        await http.post(f"{url}/provider-dialogs/a%3Ab%7E%41:typing?x=%2B1%3D")
    assert seen == [b"POST /provider-dialogs/a%3Ab%7E%41:typing?x=%2B1%3D HTTP/1.1"]


async def test_bodies_stream_both_ways() -> None:
    received = bytearray()

    async def mirror(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            received.extend(chunk[:-2])
        body = bytes(received)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async def parts() -> AsyncIterator[bytes]:
        for index in range(40):
            yield bytes([index % 256]) * 50_000

    async with raw_server(mirror) as url, client() as http:
        async with http.stream("POST", url, content=parts()) as response:
            streamed = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert len(received) == 2_000_000 and streamed == bytes(received)


# --- the AXP hot path (post_json) on the real transport ------------------------------------


@pytest.fixture
async def axp() -> AsyncIterator[tuple[AxpSimulator, AxpPlatform]]:
    sim = AxpSimulator(
        account_id="ACCONE", client_id="client", client_secret="secret", app_key="key", agent=False
    )
    server = LoopbackServer()
    async with server.serve(sim.app, lifespan="off"):
        settings = Settings(
            env="dev",
            axp_base_url=server.url,
            axp_account_id="ACCONE",
            axp_client_id="client",
            axp_client_secret="secret",
            axp_app_key="key",
        )  # type: ignore[arg-type]
        platform = AxpPlatform.from_settings(settings)
        try:
            yield sim, platform
        finally:
            await platform.aclose()


def _message(n: int):  # type: ignore[no-untyped-def]
    from tests.axp.test_messaging import customer_message

    return customer_message(n)


async def test_post_json_refreshes_a_revoked_token_once(axp) -> None:  # type: ignore[no-untyped-def]
    sim, platform = axp
    await platform.messaging.send_message(_message(1))
    sim.faults.fail_next = [401]
    result = await platform.messaging.send_message(_message(2))
    assert result.message_id
    assert sim.token_requests == 2  # the 401 dropped the token; the retry fetched a new one


async def test_post_json_gives_up_on_a_second_401(axp) -> None:  # type: ignore[no-untyped-def]
    sim, platform = axp
    sim.faults.fail_next = [401, 401]
    with pytest.raises(AxpAuthError):
        await platform.messaging.send_message(_message(1))


async def test_post_json_classifies_a_5xx_with_its_retry_after(axp) -> None:  # type: ignore[no-untyped-def]
    sim, platform = axp
    sim.faults.fail_next = [503]
    with pytest.raises(AxpRetryableError) as caught:
        await platform.messaging.send_message(_message(1))
    assert caught.value.http_status == 503


# --- the Nexus hot path (send message) on the real transports -------------------------------

NEXUS_CCID = "45acae06-6b7c-4f97-9c76-471d0c1f2e3a"
NEXUS_SECRET = SecretStr("api-secret-one-7c1a")


async def read_whole_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """The request line, the headers (lower-case names) and the body."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (field.partition(":") for field in fields)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line.encode(), headers, body


async def answer_json(writer: asyncio.StreamWriter, status: str, body: bytes, *extra: str) -> None:
    """Write one JSON answer (`extra`: more header lines) and hang up."""
    head = [f"HTTP/1.1 {status}", *extra, "Content-Type: application/json"]
    head.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def nexus(url: str, **settings: object) -> AsyncIterator[NexusClient]:
    values = {
        "env": "dev",
        "nexus_base_url": url,
        "nexus_ccid": NEXUS_CCID,
        "nexus_api_key": "nexus-api-key-0b1c2d3e",
        **settings,
    }
    configured = Settings(**values)  # type: ignore[arg-type]
    async with build_client(configured) as http:
        yield NexusClient(http, configured)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_nexus_send_message_on_the_wire(transport: str) -> None:
    seen: list[tuple[bytes, dict[str, str], bytes]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_whole_request(reader))
        await answer_json(
            writer, "200 OK", b'{"status":{"code":0,"message":"OK"},"data":{"id":"n-1"}}'
        )

    async with raw_server(answer) as url, nexus(url, http_transport=transport) as client:
        result = await client.post_to_nexus(
            "+16504661149", NEXUS_SECRET, {"text": "Héllo"}, trace_id="4bf92f3577b34da6"
        )
    assert result == {"id": "n-1"}
    ((line, headers, body),) = seen
    assert line == b"POST /nexus/v3/channels/+16504661149/messages HTTP/1.1"
    assert body == '{"text":"Héllo"}'.encode()
    assert verify(body, headers["x-hub-signature"], [NEXUS_SECRET], "hex")
    assert headers["content-type"] == "application/json"
    assert headers["x-ccid"] == NEXUS_CCID
    assert headers["x-b3-traceid"] == "4bf92f3577b34da6"
    assert headers["x-api-key"] == "nexus-api-key-0b1c2d3e"
    assert headers["user-agent"].startswith("channel-bridge/")
    assert "cookie" not in headers and "authorization" not in headers


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_nexus_send_message_failures_keep_their_meaning(transport: str) -> None:
    async def unavailable(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_whole_request(reader)
        await answer_json(
            writer,
            "503 Service Unavailable",
            b'{"status":{"code":503,"message":"busy"}}',
            "Retry-After: 7",
        )

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_whole_request(reader)
        await asyncio.sleep(5)

    async with raw_server(unavailable) as url, nexus(url, http_transport=transport) as client:
        with pytest.raises(NexusRetryableError) as caught:
            await client.post_to_nexus("c", NEXUS_SECRET, {"text": "x"})
    assert (caught.value.http_status, caught.value.retry_after_s) == (503, 7.0)
    async with (
        raw_server(silent) as url,
        nexus(url, http_transport=transport, http_timeout_s=0.3) as client,
    ):
        with pytest.raises(NexusThrottledError):
            await client.post_to_nexus("c", NEXUS_SECRET, {"text": "x"})
    async with raw_server(silent) as url:
        pass  # closed: the connection is refused
    async with nexus(url, http_transport=transport) as client:
        with pytest.raises(NexusRetryableError, match="ConnectError"):
            await client.post_to_nexus("c", NEXUS_SECRET, {"text": "x"})
