# ruff: noqa: E501  (markdown table rows read better on one line)
"""Outbound HTTP stack benchmark: a non-durable forwarder against a fake AXP (not a test).

    .venv/bin/python bench/forwarder_bench.py            # n=6000 at 16, 64, 128 in flight, medians of 3
    .venv/bin/python bench/forwarder_bench.py --quick    # n=2000, one run each
    .venv/bin/python bench/forwarder_bench.py --stacks httpx,aiohttp --concurrency 64 -n 3000

What it measures: how fast, and at what CPU cost, each HTTP client stack sends AXP
SendAsyncMessage requests with a fixed number in flight, with no database and no relay: the
ceiling the outbound stack puts on the bridge. Every send carries the real body
(`SendAsyncMessage(...).to_wire()`, ids unique per send) to bench/fake_axp.py, which answers
after `--latency-ms` in its own process, checks the token and app key, and counts duplicates.

Stacks (`--stacks`, default all):

- `httpx`: an httpx.AsyncClient as `channel_bridge.outbound.build_client(settings)` makes it,
  on httpx's own pool (httpcore; limits and timeouts from Settings); token fetched once,
  headers per send.
- `httpx-aiohttp`: the same client on the `httpx-aiohttp` package's AiohttpTransport.
- `httpx-bridge-transport`: the same client on the bridge's own `outbound.AiohttpTransport`.
- `aiohttp`: aiohttp.ClientSession directly (TCPConnector(limit=concurrency)).
- `httpx2`: pydantic's fork, configured like `httpx`.
- `httpx-h2`: httpx with `http1=False, http2=True` (h2c by prior knowledge: one connection,
  many streams) against the fake's hypercorn port.
- `bridge`: the bridge's own AXP stack as production builds it,
  `AxpPlatform.from_settings(settings)` then `platform.messaging.send_message(SendAsyncMessage(
  ...))`: token auth, to_wire(), problem checks, AsyncMessage parsing, on the default
  transport (`BRIDGE_HTTP_TRANSPORT=aiohttp`); `bridge-httpx-pool` the same on httpx's pool.

Method: the fake is started once; for each concurrency, each repeat runs every stack back to
back (interleaved, so a noisy minute hits all stacks alike), each run in a fresh event loop
(uvloop, as uvicorn runs the bridge) after a warm-up that fills the connection pool. Figures
per run: sends/s (wall clock of the timed sends), p50/p99 latency of one send, CPU per send
in this process (time.process_time() delta / sends), and the fake's CPU per request; the
tables show medians over the repeats. The fake is reset before each run and checks that every
send arrived exactly once. With `wrk` on PATH (and `h2load` for httpx-h2; Debian packages wrk
and nghttp2-client) the fake's own capacity at each concurrency is measured first: a C
client, same body, same latency, i.e. the ceiling on this machine.

Library use (the relay drain benchmark reuses both against the same fake):

    with start_fake_axp(latency_ms=10) as fake:
        figures = run_forwarder("aiohttp", base_url=fake.base_url, n=2000, concurrency=64)
        fake.stats(); fake.received(); fake.reset(); fake.faults(error_rate=0.2, status=503)

Results: bench/results/<UTC date-time>-forwarder.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from channel_bridge.mappings.conversations import provider_dialog_id
from channel_bridge.ops.logging import configure_logging
from channel_bridge.outbound import AiohttpTransport, build_client, client_limits
from channel_bridge.platforms.axp.auth import TOKEN_PATH
from channel_bridge.platforms.axp.client import CUSTOM_MESSAGING_BASE
from channel_bridge.platforms.axp.platform import AxpPlatform
from channel_bridge.platforms.axp.schemas import (
    BodyElement,
    ElementText,
    MessageHeaders,
    SendAsyncMessage,
)
from channel_bridge.relay.destinations import idempotency_key_for
from channel_bridge.sandbox.mode import (
    DEMO_CHANNEL_PROVIDER_ID,
    DEMO_INTEGRATION_ID,
    DEMO_NEXUS_CHANNEL,
    SANDBOX_ACCOUNT,
    sandbox_settings,
)
from channel_bridge.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FAKE_AXP = ROOT / "bench" / "fake_axp.py"
RESULTS = ROOT / "bench" / "results"
STACKS = (
    "httpx",
    "httpx-aiohttp",
    "httpx-bridge-transport",
    "aiohttp",
    "httpx2",
    "httpx-h2",
    "bridge",
    "bridge-httpx-pool",
)
DIALOGS = 200  # conversations the sends are spread over
TEXT = "Hello, I would like to change the delivery address of my order 4711 please."


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the fake AXP process ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeAxpHandle:
    """A running bench/fake_axp.py. Control calls are synchronous (urllib): use them between
    measured phases, not inside one (they block the caller's event loop for a moment)."""

    process: subprocess.Popen[bytes]
    base_url: str
    h2_base_url: str | None
    latency_ms: float
    log_path: Path

    def _call(self, method: str, path: str, **query: Any) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """{messages, token_requests, duplicates, faults, rejected, cpu_s, rss_mb}"""
        return self._call("GET", "/_bench/stats")  # type: ignore[no-any-return]

    def received(self) -> list[tuple[str, str | None, float]]:
        """[(providerMessageId, providerDialogId, arrival time.time()), ...] in arrival order."""
        return [tuple(item) for item in self._call("GET", "/_bench/received")]  # type: ignore[misc]

    def reset(self) -> None:
        self._call("POST", "/_bench/reset")

    def faults(
        self, error_rate: float = 0.0, status: int = 503, retry_after: str | None = None
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            "/_bench/faults",
            error_rate=error_rate,  # type: ignore[no-any-return]
            status=status,
            retry_after=retry_after,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> FakeAxpHandle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_fake_axp(
    latency_ms: float = 10.0,
    port: int | None = None,
    *,
    http2: bool = False,
    server: str = "raw",
    startup_timeout_s: float = 20.0,
) -> FakeAxpHandle:
    """Start bench/fake_axp.py in its own process and wait until it answers."""
    port = port or free_port()
    h2_port = free_port() if http2 else None
    command = [
        sys.executable,
        str(FAKE_AXP),
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--server",
        server,
    ]
    if h2_port:
        command += ["--http2", "--http2-port", str(h2_port)]
    log_path = Path(tempfile.mkstemp(prefix="fake-axp-", suffix=".log")[1])
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    handle = FakeAxpHandle(
        process=process,
        base_url=f"http://127.0.0.1:{port}",
        h2_base_url=f"http://127.0.0.1:{h2_port}" if h2_port else None,
        latency_ms=latency_ms,
        log_path=log_path,
    )
    deadline = time.monotonic() + startup_timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"fake AXP exited ({process.returncode}): {log_path.read_text()}")
        try:
            handle.stats()
            if h2_port:
                with socket.create_connection(("127.0.0.1", h2_port), timeout=1):
                    pass
            return handle
        except OSError:
            if time.monotonic() > deadline:
                handle.stop()
                raise RuntimeError(f"fake AXP did not start: {log_path.read_text()}") from None
            time.sleep(0.1)


# --- the messages --------------------------------------------------------------------------


def bench_settings(base_url: str) -> Settings:
    """Production defaults (timeouts, pool limits) with the sandbox AXP credentials."""
    return sandbox_settings(Settings(env="dev", log_level="WARNING")).model_copy(
        update={"axp_base_url": base_url, "sandbox": False}
    )


def build_messages(n: int, run_id: str, *, first_delivery_id: int = 1) -> list[SendAsyncMessage]:
    """n distinct messages shaped like bridge.nexus_to_axp.deliver_message's."""
    settings = Settings(env="dev")
    messages = []
    for i in range(n):
        customer = f"+1555{(i % DIALOGS):07d}"
        messages.append(
            SendAsyncMessage(
                channelProviderId=DEMO_CHANNEL_PROVIDER_ID,
                channelId="Messaging",
                businessAccountName=DEMO_INTEGRATION_ID,
                customerIdentifiers={"phoneNumbers": [customer]},
                senderName=customer,
                providerSenderId=customer,
                providerDialogId=provider_dialog_id(DEMO_NEXUS_CHANNEL, customer, 1),
                providerMessageId=f"nexus-{run_id}-{i:07d}",
                body=BodyElement(
                    elementType="text", elementText=ElementText(text=TEXT, textFormat="PLAINTEXT")
                ),
                headers=MessageHeaders(
                    sourceType=settings.axp_source_type, sourceAddress=DEMO_NEXUS_CHANNEL
                ),
                correlationId=idempotency_key_for(first_delivery_id + i) + f"-{run_id}",
            )
        )
    return messages


# --- the stacks ----------------------------------------------------------------------------

Send = Callable[[Any], Awaitable[None]]  # a wire dict or a SendAsyncMessage


@dataclass
class Stack:
    send: Send
    close: Callable[[], Awaitable[None]]
    # Bodies as the stack wants them: the raw stacks get the wire dict prepared in advance
    # (the bridge stacks pay to_wire() per send, as production does).
    wire: bool = True


def _paths(settings: Settings) -> tuple[str, str]:
    token = TOKEN_PATH.format(account_id=SANDBOX_ACCOUNT)
    messages = f"{CUSTOM_MESSAGING_BASE}/accounts/{SANDBOX_ACCOUNT}/messages"
    return token, messages


def _token_form(settings: Settings) -> dict[str, str]:
    assert settings.axp_client_id and settings.axp_client_secret
    return {
        "grant_type": "client_credentials",
        "client_id": settings.axp_client_id,
        "client_secret": settings.axp_client_secret.get_secret_value(),
    }


def _app_key(settings: Settings) -> str:
    assert settings.axp_app_key
    return settings.axp_app_key.get_secret_value()


def _check(status: int, body: Any) -> None:
    if status != 200 or not body.get("messageId"):
        raise RuntimeError(f"send answered {status}: {str(body)[:200]}")


def _limits(settings: Settings) -> httpx.Limits:
    # What channel_bridge.outbound gives every client.
    return client_limits(settings)


async def _httpx_like(client: Any, settings: Settings, base_url: str) -> Stack:
    """A client with the httpx API (httpx, httpx2, any transport): token once, then sends."""
    token_path, messages_path = _paths(settings)
    app_key = _app_key(settings)
    answer = await client.post(
        base_url + token_path, data=_token_form(settings), headers={"appkey": app_key}
    )
    answer.raise_for_status()
    headers = {
        "Authorization": f"Bearer {answer.json()['access_token']}",
        "appkey": app_key,
        "accept": "application/json",
    }
    url = base_url + messages_path

    async def send(wire: Any) -> None:
        response = await client.post(url, json=wire, headers=headers)
        _check(response.status_code, response.json())

    return Stack(send=send, close=client.aclose)


def _httpx_transport(settings: Settings) -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(limits=_limits(settings))


def _third_party_aiohttp_transport(settings: Settings) -> httpx.AsyncBaseTransport:
    from httpx_aiohttp import AiohttpTransport as HttpxAiohttpTransport

    return HttpxAiohttpTransport(limits=_limits(settings))


async def open_httpx(settings: Settings, base_url: str, concurrency: int) -> Stack:
    client = build_client(settings, transport=_httpx_transport(settings))
    return await _httpx_like(client, settings, base_url)


async def open_httpx_aiohttp(settings: Settings, base_url: str, concurrency: int) -> Stack:
    client = build_client(settings, transport=_third_party_aiohttp_transport(settings))
    return await _httpx_like(client, settings, base_url)


async def open_httpx_bridge_transport(settings: Settings, base_url: str, concurrency: int) -> Stack:
    client = build_client(settings, transport=AiohttpTransport(limits=_limits(settings)))
    return await _httpx_like(client, settings, base_url)


async def open_httpx2(settings: Settings, base_url: str, concurrency: int) -> Stack:
    import httpx2

    client = httpx2.AsyncClient(
        timeout=httpx2.Timeout(settings.http_timeout_s, connect=settings.http_connect_timeout_s),
        limits=httpx2.Limits(
            max_connections=settings.http_max_connections,
            max_keepalive_connections=settings.http_max_connections // 2,
        ),
        headers={"user-agent": "channel-bridge-bench"},
        follow_redirects=False,
    )
    return await _httpx_like(client, settings, base_url)


async def open_httpx_h2(settings: Settings, base_url: str, concurrency: int) -> Stack:
    # http1=False: over cleartext there is no ALPN, so only prior knowledge gives HTTP/2.
    client = httpx.AsyncClient(
        http1=False,
        http2=True,
        timeout=httpx.Timeout(settings.http_timeout_s, connect=settings.http_connect_timeout_s),
        limits=_limits(settings),
        headers={"user-agent": "channel-bridge-bench"},
        follow_redirects=False,
    )
    probe = await client.get(base_url + "/_bench/stats")
    if probe.http_version != "HTTP/2":
        raise RuntimeError(f"expected HTTP/2, got {probe.http_version}")
    return await _httpx_like(client, settings, base_url)


async def open_aiohttp(settings: Settings, base_url: str, concurrency: int) -> Stack:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.http_connect_timeout_s,
            sock_read=settings.http_timeout_s,
        ),
        headers={"user-agent": "channel-bridge-bench"},
    )
    token_path, messages_path = _paths(settings)
    app_key = _app_key(settings)
    async with session.post(
        base_url + token_path, data=_token_form(settings), headers={"appkey": app_key}
    ) as answer:
        answer.raise_for_status()
        token = (await answer.json())["access_token"]
    headers = {"Authorization": f"Bearer {token}", "appkey": app_key, "accept": "application/json"}
    url = base_url + messages_path

    async def send(wire: Any) -> None:
        async with session.post(url, json=wire, headers=headers) as response:
            _check(response.status, await response.json())

    return Stack(send=send, close=session.close)


async def _bridge(settings: Settings, transport: httpx.AsyncBaseTransport | None) -> Stack:
    platform = AxpPlatform.from_settings(settings, transport=transport)

    async def send(message: SendAsyncMessage) -> None:
        result = await platform.messaging.send_message(message)
        if not result.message_id:
            raise RuntimeError("send answered without a messageId")

    return Stack(send=send, close=platform.aclose, wire=False)


async def open_bridge(settings: Settings, base_url: str, concurrency: int) -> Stack:
    return await _bridge(settings, None)


async def open_bridge_httpx_pool(settings: Settings, base_url: str, concurrency: int) -> Stack:
    return await _bridge(settings.model_copy(update={"http_transport": "httpx"}), None)


OPENERS: dict[str, Callable[[Settings, str, int], Coroutine[Any, Any, Stack]]] = {
    "httpx": open_httpx,
    "httpx-aiohttp": open_httpx_aiohttp,
    "httpx-bridge-transport": open_httpx_bridge_transport,
    "aiohttp": open_aiohttp,
    "httpx2": open_httpx2,
    "httpx-h2": open_httpx_h2,
    "bridge": open_bridge,
    "bridge-httpx-pool": open_bridge_httpx_pool,
}


# --- one run -------------------------------------------------------------------------------


async def _drive(
    send: Send, items: Sequence[Any], concurrency: int
) -> tuple[list[float], int, str | None]:
    """Send all items with exactly `concurrency` in flight; (latencies s, errors, first error)."""
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    pending = iter(items)
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal errors, first_error
        for item in pending:
            started = clock()
            try:
                await send(item)
            except Exception as exc:  # counted, and the first one reported
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
            latencies.append(clock() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, first_error


async def forwarder_run(
    stack: str,
    *,
    base_url: str,
    n: int,
    concurrency: int,
    settings: Settings | None = None,
    warmup: int | None = None,
    messages: Sequence[SendAsyncMessage] | None = None,
) -> dict[str, Any]:
    """One measured run of `stack` (in the running loop): sends/s, p50/p99 ms, CPU µs/send.

    `messages` defaults to n fresh SendAsyncMessages with unique ids; `warmup` (default
    max(2 x concurrency, 200) sends, not measured) fills the pool and fetches the token.
    """
    if stack not in OPENERS:
        raise ValueError(f"unknown stack {stack!r}: one of {', '.join(OPENERS)}")
    settings = settings or bench_settings(base_url)
    run_id = secrets.token_hex(4)
    warmup = max(2 * concurrency, 200) if warmup is None else warmup
    timed = list(messages) if messages is not None else build_messages(n, run_id)
    warm = build_messages(warmup, run_id + "w", first_delivery_id=10**8)
    opened = await OPENERS[stack](settings, base_url, concurrency)
    try:
        timed_items = [m.to_wire() for m in timed] if opened.wire else timed
        warm_items = [m.to_wire() for m in warm] if opened.wire else warm
        _lat, warm_errors, warm_error = await _drive(opened.send, warm_items, concurrency)
        if warm_errors:
            raise RuntimeError(f"{stack}: {warm_errors} warm-up sends failed: {warm_error}")
        gc.collect()
        cpu_started = time.process_time()
        started = time.perf_counter()
        latencies, errors, first_error = await _drive(opened.send, timed_items, concurrency)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        await opened.close()
    sent = len(timed_items)
    return {
        "stack": stack,
        "concurrency": concurrency,
        "n": sent,
        "warmup": warmup,
        "elapsed_s": elapsed,
        "sends_per_s": sent / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_us_per_send": cpu / sent * 1e6,
        "cpu_share": cpu / elapsed,
        "errors": errors,
        "first_error": first_error,
    }


def _event_loop_run(coroutine: Coroutine[Any, Any, Any], loop: str = "uvloop") -> Any:
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def run_forwarder(
    stack: str, *, base_url: str, n: int, concurrency: int, loop: str = "uvloop", **options: Any
) -> dict[str, Any]:
    """forwarder_run in a fresh event loop (uvloop when installed); see forwarder_run."""
    return _event_loop_run(  # type: ignore[no-any-return]
        forwarder_run(stack, base_url=base_url, n=n, concurrency=concurrency, **options), loop
    )


# --- the fake's own capacity (wrk) --------------------------------------------------------


def _load_tool_inputs(fake: FakeAxpHandle) -> tuple[str, str, str, str]:
    """(token, app key, messages path, one real body) for a C load generator."""
    settings = bench_settings(fake.base_url)
    token_path, messages_path = _paths(settings)
    answer = httpx.post(
        fake.base_url + token_path,
        data=_token_form(settings),
        headers={"appkey": _app_key(settings)},
    )
    token = answer.json()["access_token"]
    body = json.dumps(build_messages(1, "load")[0].to_wire(), separators=(",", ":"))
    return token, _app_key(settings), messages_path, body


def _duration_ms(value: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    return float(value)


def fake_capacity(
    fake: FakeAxpHandle, concurrency: int, *, http2: bool = False, duration_s: int = 5
) -> dict[str, Any] | None:
    """What a C client pushes through the fake at `concurrency` (the ceiling on this machine):
    wrk -t1 -c<concurrency> over HTTP/1.1, or h2load -c1 -m<concurrency> over h2c (one
    connection, like httpx-h2). None when the tool is not installed."""
    tool = "h2load" if http2 else "wrk"
    if shutil.which(tool) is None or (http2 and not fake.h2_base_url):
        return None
    token, app_key, messages_path, body = _load_tool_inputs(fake)
    scratch = Path(tempfile.mkdtemp(prefix="fake-axp-load-"))
    if http2:
        (scratch / "body.json").write_text(body)
        command = [
            "h2load",
            "-c1",
            f"-m{concurrency}",
            "-D",
            str(duration_s),
            "--warm-up-time=1",
            "-d",
            str(scratch / "body.json"),
            "-H",
            f"authorization: Bearer {token}",
            "-H",
            f"appkey: {app_key}",
            "-H",
            "content-type: application/json",
            f"{fake.h2_base_url}{messages_path}",
        ]
    else:
        (scratch / "post.lua").write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
            f'wrk.headers["appkey"] = "{app_key}"\n'
            f"wrk.body = [[{body}]]\n"
        )
        command = [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{duration_s}s",
            "--latency",
            "-s",
            str(scratch / "post.lua"),
            fake.base_url + messages_path,
        ]
    before = fake.stats()
    try:
        output = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=duration_s + 30
        ).stdout
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    after = fake.stats()
    served = after["messages"] - before["messages"]
    fake.reset()  # the tool repeats one body: its duplicates must not count against a stack
    found: dict[str, Any] = {
        "tool": tool,
        "concurrency": concurrency,
        "fake_cpu_us_per_request": (after["cpu_s"] - before["cpu_s"]) / max(served, 1) * 1e6,
    }
    for line in output.splitlines():
        parts = line.split()
        if http2 and line.startswith("finished in"):
            found["requests_per_s"] = float(parts[3])
        elif http2 and line.startswith("time for request:"):
            found["mean_ms"] = _duration_ms(parts[5])  # h2load gives no percentiles
        elif not http2 and parts[:1] == ["Requests/sec:"]:
            found["requests_per_s"] = float(parts[1])
        elif not http2 and parts[:1] in (["50%"], ["99%"]):
            found["p50_ms" if parts[0] == "50%" else "p99_ms"] = _duration_ms(parts[1])
    return found


# --- the whole benchmark ------------------------------------------------------------------


def _versions() -> dict[str, str]:
    found = {}
    for package in (
        "httpx",
        "httpcore",
        "aiohttp",
        "httpx-aiohttp",
        "httpx2",
        "httpcore2",
        "h2",
        "hypercorn",
        "httptools",
        "uvloop",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def _source() -> dict[str, Any]:
    """Which channel_bridge was measured: its path, and the commit of the tree it lives in."""
    import channel_bridge

    path = Path(channel_bridge.__file__).resolve().parent
    found: dict[str, Any] = {"channel_bridge": str(path)}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        found["git_head"] = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found["uncommitted_files"] = len(changed.splitlines())
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=6000, help="timed sends per run")
    parser.add_argument("--concurrency", default="16,64,128", help="sends in flight, a list")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="the fake's answer delay")
    parser.add_argument("--stacks", default=",".join(STACKS), help=f"subset of {','.join(STACKS)}")
    parser.add_argument("--repeat", type=int, default=3, help="runs per stack and concurrency")
    parser.add_argument("--quick", action="store_true", help="n=2000, one run each")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--fake-server", choices=("raw", "aiohttp"), default="raw")
    parser.add_argument("--no-wrk", action="store_true", help="skip the fake's capacity check")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeat = 2000, 1
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    unknown = sorted(set(stacks) - set(STACKS))
    if unknown:
        parser.error(f"unknown stacks: {', '.join(unknown)}")
    levels = [int(c) for c in args.concurrency.split(",")]
    configure_logging(level="WARNING", fmt="console")
    started = dt.datetime.now(dt.UTC)
    command = " ".join([".venv/bin/python bench/forwarder_bench.py", *sys.argv[1:]])
    console = Console(width=max(Console().width, 132))

    runs: list[dict[str, Any]] = []
    capacity: list[dict[str, Any]] = []
    with start_fake_axp(
        args.latency_ms, http2="httpx-h2" in stacks, server=args.fake_server
    ) as fake:
        if not args.no_wrk:
            for http2 in (False, True) if "httpx-h2" in stacks else (False,):
                for level in levels:
                    found = fake_capacity(fake, level, http2=http2)
                    if found:
                        capacity.append(found)
                        console.print(
                            f"fake capacity ({found['tool']}, {level} in flight): "
                            f"{found.get('requests_per_s', float('nan')):,.0f} req/s, "
                            f"fake CPU {found['fake_cpu_us_per_request']:.0f} µs/req"
                        )
        for level in levels:
            for repeat in range(args.repeat):
                for stack in stacks:
                    base_url = fake.h2_base_url if stack == "httpx-h2" else fake.base_url
                    assert base_url
                    fake.reset()  # keeps the fake's memory to one run's messages
                    before = fake.stats()
                    try:
                        figures = run_forwarder(
                            stack, base_url=base_url, n=args.n, concurrency=level, loop=args.loop
                        )
                    except Exception as exc:  # one broken stack must not lose the others
                        figures = {
                            "stack": stack,
                            "concurrency": level,
                            "failed": f"{type(exc).__name__}: {exc}"[:500],
                        }
                        console.print(f"[red]{stack} c={level}: {figures['failed']}[/red]")
                        runs.append({**figures, "repeat": repeat})
                        continue
                    after = fake.stats()
                    served = after["messages"] - before["messages"]
                    figures["repeat"] = repeat
                    figures["fake_received"] = served
                    figures["fake_duplicates"] = after["duplicates"] - before["duplicates"]
                    # Sends the stack counted as done that the fake never accepted (or extra).
                    figures["fake_missing"] = figures["n"] + figures["warmup"] - served
                    figures["fake_cpu_us_per_request"] = (
                        (after["cpu_s"] - before["cpu_s"]) / max(served, 1) * 1e6
                    )
                    figures["token_requests"] = after["token_requests"] - before["token_requests"]
                    runs.append(figures)
                    console.print(
                        f"{stack:>15} c={level:<4} #{repeat + 1}: {figures['sends_per_s']:8,.0f}/s "
                        f"p50 {figures['p50_ms']:6.1f} ms p99 {figures['p99_ms']:6.1f} ms "
                        f"CPU {figures['cpu_us_per_send']:5.0f} µs/send  errors {figures['errors']}"
                    )
        fake_rss = fake.stats()["rss_mb"]

    summary = summarise(runs, stacks, levels)
    table = Table(
        title=f"forwarder: medians of {args.repeat}, n={args.n}, {args.latency_ms:g} ms upstream"
    )
    for column in (
        "stack",
        "in flight",
        "sends/s",
        "p50 ms",
        "p99 ms",
        "CPU µs/send",
        "CPU %",
        "fake µs/req",
        "errors",
    ):
        table.add_column(column, justify="left" if column == "stack" else "right")
    for row in summary:
        table.add_row(
            row["stack"],
            str(row["concurrency"]),
            *(
                ("failed", "", "", "", "", "", "")
                if row.get("failed")
                else (
                    f"{row['sends_per_s']:,.0f}",
                    f"{row['p50_ms']:.1f}",
                    f"{row['p99_ms']:.1f}",
                    f"{row['cpu_us_per_send']:.0f}",
                    f"{row['cpu_share'] * 100:.0f}",
                    f"{row['fake_cpu_us_per_request']:.0f}",
                    str(row["errors"]),
                )
            ),
        )
    console.print(table)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"{started:%Y-%m-%d-%H%M}-forwarder"
    report = {
        "started": started.isoformat(),
        "command": command,
        "n": args.n,
        "repeat": args.repeat,
        "latency_ms": args.latency_ms,
        "concurrency": levels,
        "stacks": stacks,
        "loop": args.loop,
        "fake_server": args.fake_server,
        "cpus": os.cpu_count(),
        "versions": _versions(),
        "source": _source(),
        "pool": {
            "max_connections": _limits(bench_settings("http://x")).max_connections,
            "max_keepalive_connections": _limits(
                bench_settings("http://x")
            ).max_keepalive_connections,
        },
        "fake_capacity": capacity,
        "fake_rss_mb_at_end": fake_rss,
        "summary": summary,
        "runs": runs,
    }
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown(report) + "\n")
    console.print(f"\nwritten {stem}.md and .json")
    return 0


def summarise(
    runs: list[dict[str, Any]], stacks: list[str], levels: list[int]
) -> list[dict[str, Any]]:
    rows = []
    for level in levels:
        for stack in stacks:
            mine = [r for r in runs if r["stack"] == stack and r["concurrency"] == level]
            good = [r for r in mine if "failed" not in r]
            if not good:
                rows.append(
                    {
                        "stack": stack,
                        "concurrency": level,
                        "failed": mine[0]["failed"] if mine else "not run",
                    }
                )
                continue
            row: dict[str, Any] = {"stack": stack, "concurrency": level, "runs": len(good)}
            for key in (
                "sends_per_s",
                "p50_ms",
                "p99_ms",
                "cpu_us_per_send",
                "fake_cpu_us_per_request",
                "cpu_share",
            ):
                row[key] = statistics.median(r[key] for r in good)
            row["errors"] = sum(r["errors"] for r in good)
            row["duplicates"] = sum(r["fake_duplicates"] for r in good)
            row["missing"] = sum(r["fake_missing"] for r in good)
            row["per_run_sends_per_s"] = [round(r["sends_per_s"]) for r in good]
            row["first_error"] = next((r["first_error"] for r in good if r["first_error"]), None)
            if len(good) < len(mine):
                row["failed_runs"] = len(mine) - len(good)
            rows.append(row)
    return rows


def _source_line(source: dict[str, Any]) -> str:
    if "git_head" not in source:
        return f"`{source.get('channel_bridge', '?')}` (not a git work tree, e.g. a git archive)"
    dirty = source.get("uncommitted_files", 0)
    state = f"with {dirty} uncommitted file(s)" if dirty else "clean"
    return f"`{source['channel_bridge']}` at {source['git_head']} ({state})"


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    started = dt.datetime.fromisoformat(report["started"])
    quick = " (--quick)" if report["repeat"] == 1 and report["n"] == 2000 else ""
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    lines = [
        f"# Outbound HTTP stacks: forwarder benchmark, {started:%Y-%m-%d %H:%M} UTC{quick}",
        "",
        f"Machine: {report['cpus']} cores, shared. Forwarder = this process ({report['loop']} loop), no database; "
        f"fake AXP (bench/fake_axp.py, `{report['fake_server']}` server, uvloop) in its own process answering sends in "
        f"{report['latency_ms']:g} ms. Each run: warm-up, then {report['n']:,} timed sends of the real SendAsyncMessage "
        f"body with a fixed number in flight; stacks interleaved, medians of {report['repeat']} run(s). "
        f"Command: `{report['command']}`.",
        "",
        f"Versions: {versions}. channel_bridge measured: {_source_line(report.get('source', {}))}.",
        "",
    ]
    if report["fake_capacity"]:
        lines += [
            "## The fake's own capacity (a C client, same body, same latency)",
            "",
            "wrk -t1 -c<in flight> (HTTP/1.1, raw server); h2load -c1 -m<in flight> (h2c, one "
            "connection, hypercorn; h2load reports a mean, not percentiles). The ceiling is "
            "in flight / latency.",
            "",
            "| tool | in flight | req/s | p50 ms | p99 ms | mean ms | fake CPU µs/req | ceiling |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for cap in report["fake_capacity"]:
            latency_s = report["latency_ms"] / 1000
            ceiling = f"{cap['concurrency'] / latency_s:,.0f}/s" if latency_s else "-"
            lines.append(
                f"| {cap['tool']} | {cap['concurrency']} | {_fmt(cap.get('requests_per_s'), ',.0f')} | "
                f"{_fmt(cap.get('p50_ms'))} | {_fmt(cap.get('p99_ms'))} | {_fmt(cap.get('mean_ms'))} | "
                f"{cap['fake_cpu_us_per_request']:.0f} | {ceiling} |"
            )
        lines.append("")
    lines += [
        "## Sends per second, latency and CPU per send (medians)",
        "",
        "CPU % = forwarder CPU time / wall time of the timed sends (100 % = one core busy: the "
        "stack is CPU-bound).",
        "",
        "| stack | in flight | sends/s | p50 ms | p99 ms | CPU µs/send (forwarder) | CPU % | fake CPU µs/req | errors | per-run sends/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        if row.get("failed"):
            lines.append(
                f"| {row['stack']} | {row['concurrency']} | failed: {row['failed']} | | | | | | | |"
            )
            continue
        lines.append(
            f"| {row['stack']} | {row['concurrency']} | **{row['sends_per_s']:,.0f}** | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['cpu_us_per_send']:.0f} | {row['cpu_share'] * 100:.0f} % | "
            f"{row['fake_cpu_us_per_request']:.0f} | {row['errors']} | "
            f"{', '.join(f'{v:,}' for v in row['per_run_sends_per_s'])} |"
        )
    good_runs = [r for r in report["runs"] if "failed" not in r]
    odd = [r for r in good_runs if r["fake_duplicates"] or r["fake_missing"]]
    lines += [
        "",
        f"Checked at the fake: {len(good_runs)} run(s); "
        + (
            "every send arrived exactly once (no duplicate, none missing)."
            if not odd
            else "runs with duplicates or missing sends: "
            + "; ".join(
                f"{r['stack']} c={r['concurrency']} #{r['repeat'] + 1}: "
                f"{r['fake_duplicates']} dup, {r['fake_missing']} missing"
                for r in odd
            )
        ),
    ]
    errors = [row for row in report["summary"] if row.get("first_error")]
    if errors:
        lines += [
            "",
            "First errors: "
            + "; ".join(f"{r['stack']} c={r['concurrency']}: {r['first_error']}" for r in errors),
        ]
    lines += [
        "",
        "Stacks: `httpx` = channel_bridge.outbound.build_client on httpx's pool (httpcore, "
        f"max_connections {report['pool']['max_connections']}, "
        f"max_keepalive_connections {report['pool']['max_keepalive_connections']}); `httpx-aiohttp` = the same client on "
        "httpx_aiohttp.AiohttpTransport; `httpx-bridge-transport` = the same client on channel_bridge.outbound.AiohttpTransport; "
        "`aiohttp` = ClientSession, TCPConnector(limit=in flight); "
        "`httpx2` = httpx2.AsyncClient with the same limits; `httpx-h2` = httpx http1=False http2=True "
        "(h2c prior knowledge, one connection) against the fake's hypercorn port; `bridge` = "
        "AxpPlatform.from_settings(settings) and messaging.send_message (token auth, to_wire, AsyncMessage parsing) "
        "on the bridge's default transport; `bridge-httpx-pool` = the same with BRIDGE_HTTP_TRANSPORT=httpx.",
        "",
        f"CPU µs/send is this process's time.process_time() over the timed sends / sends; a stack at "
        f"~1,000,000 / (CPU µs/send) sends/s is CPU-bound on one core. The fake's RSS at the end: "
        f"{report['fake_rss_mb_at_end']:.0f} MB.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
