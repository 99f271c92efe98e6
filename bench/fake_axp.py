"""A lean fake AXP upstream, in its own process, for outbound-client benchmarks (not a test).

    .venv/bin/python bench/fake_axp.py --port 18090 --latency-ms 10
    .venv/bin/python bench/fake_axp.py --port 18090 --latency-ms 10 --http2   # + h2c on 18091

What it is for: measuring the bridge's HTTP *client* stacks (bench/forwarder_bench.py, the relay
drain benchmark), so it must cost far less per request than the clients it serves. The sandbox
simulator (bench/upstream.py: FastAPI, the whole AXP surface, callbacks) costs several times
more per request and is not used here.

Wire contract (the same as channel_bridge.sandbox.axp and what channel_bridge.platforms.axp
sends and parses):

- `POST /api/auth/v1/{accountId}/protocol/openid-connect/token`, form `grant_type=
  client_credentials, client_id, client_secret`, header `appkey` -> 200 `{access_token,
  expires_in, token_type}`; 401 problem+json for wrong credentials, 404 for another account.
  The accepted credentials are the sandbox ones (channel_bridge.sandbox.mode).
- `POST /api/digital/custom-messaging/v1/accounts/{accountId}/messages` -> after
  `--latency-ms`, 200 with an AsyncMessage (messageId, accountId, dialogId, engagementId,
  status, providerDialogId, providerMessageId, correlationId). Requires `Authorization:
  Bearer <issued, unexpired token>` and the app key (401 otherwise); 400 (constraint
  violation) when the body is not JSON or lacks a required field, including
  providerMessageId and correlationId. The answer is decided on arrival and sent after the
  latency (the raw server waits with loop.call_later, the others with asyncio.sleep).

Bench routes: `GET /_bench/stats` ({messages, token_requests, duplicates (same
providerMessageId + correlationId again), faults, rejected, connections, cpu_s, rss_mb}),
`GET /_bench/received` ([[providerMessageId, providerDialogId, arrival time.time()], ...] in
arrival order; arrival = when the request was read, before the latency), `POST
/_bench/reset`, `POST /_bench/faults?error_rate=0.2&status=503[&retry_after=2]` (that
fraction of sends answered, after the latency, with that status and a problem+json body).
Each accepted message is kept as one tuple of the body's own strings (dialog ids interned):
about 40 MB for 100k messages.

Servers: `--server raw` (default; asyncio + httptools, no task per request) or `--server
aiohttp` (aiohttp.web's low-level server), both on uvloop when installed. Measured with wrk
on the 2-core dev machine: raw ~26k req/s at 0 ms (39 µs CPU/request) against aiohttp.web's
~10k (102 µs), and 5.9k against 4.8k req/s at 64 in flight and 10 ms. That matters because
the fake shares the cores with the client under test. `--http2` adds hypercorn (ASGI; h2c by
prior knowledge, and HTTP/1.1) on `--http2-port` (default: port + 1), same process and state.
Hypercorn is pure Python (~0.8-1 ms CPU per h2 request here, ~1.1-1.6k req/s with h2load), so
HTTP/2 sends/s are bounded by it; compare HTTP/2 stacks by the client's CPU per send.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import itertools
import random
import resource
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from channel_bridge.sandbox.axp import problem_document
from channel_bridge.sandbox.mode import (
    AXP_APP_KEY,
    AXP_CLIENT_SECRET,
    SANDBOX_ACCOUNT,
    sandbox_settings,
)
from channel_bridge.settings import Settings

JSON = "application/json"
PROBLEM = "application/problem+json"
TOKEN_PREFIX = "/api/auth/v1/"
TOKEN_SUFFIX = "/protocol/openid-connect/token"
MESSAGES_PREFIX = "/api/digital/custom-messaging/v1/accounts/"
MESSAGES_SUFFIX = "/messages"
# Nexus's Third-Party Messaging send (the bridge's default `nexus_messages_path`): where the
# relay puts agent messages from AXP MESSAGES callbacks.
NEXUS_MESSAGES_PREFIX = "/nexus/v3/channels/"
# The fields the simulator and AXP's spec require on SendAsyncMessage, plus the two ids the
# bridge always sends (AXP has no idempotency key: these are how a retry is recognised).
REQUIRED_FIELDS = (
    "channelProviderId",
    "channelId",
    "businessAccountName",
    "customerIdentifiers",
    "body",
    "providerMessageId",
    "correlationId",
)

Reply = tuple[int, str, bytes, dict[str, str] | None]


def _sandbox_client_id() -> str:
    # The client id is not a module constant in sandbox.mode; sandbox_settings() is where the
    # sandbox credentials are defined, so read it from there rather than repeat it.
    client_id = sandbox_settings(Settings(env="dev")).axp_client_id
    assert client_id
    return client_id


def dialog_ids_of(provider_dialog_id: str) -> tuple[str, str]:
    """Stable engagementId and dialogId for a providerDialogId, without a dict of dialogs."""
    d = hashlib.blake2b(provider_dialog_id.encode(), digest_size=32).hexdigest()
    return (
        f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}",
        f"{d[32:40]}-{d[40:44]}-{d[44:48]}-{d[48:52]}-{d[52:64]}",
    )


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    anchor: str,
    violations: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    body = problem_document(status, title, detail, anchor=anchor, violations=violations)
    return status, PROBLEM, orjson.dumps(body), headers


def unauthorized() -> Reply:
    return problem(
        401, "Unauthorized", "This operation requires authentication.", anchor="unauthorized"
    )


def constraint_violation(violations: list[dict[str, Any]], detail: str) -> Reply:
    return problem(
        400, "Constraint Violation", detail, anchor="constraint-violation", violations=violations
    )


def ok(data: Any) -> Reply:
    return 200, JSON, orjson.dumps(data), None


class FakeAxp:
    """The state and the routes, independent of the HTTP server that carries them."""

    def __init__(self, *, latency_s: float, token_ttl_s: int = 900, seed: int | None = None):
        self.latency_s = latency_s
        self.token_ttl_s = token_ttl_s
        self.account_id = SANDBOX_ACCOUNT
        self.client_id = _sandbox_client_id()
        self.client_secret = AXP_CLIENT_SECRET
        self.app_key = AXP_APP_KEY
        self._random = random.Random(seed)
        self.tokens: dict[str, float] = {}
        self.error_rate = 0.0
        self.error_status = 503
        self.retry_after: str | None = None
        # Ids are uuid-shaped: a random prefix per process and a counter (uuid4() costs ~5 µs
        # on this machine, a quarter of the whole request).
        self._id_prefix = str(uuid.uuid4())[:24]
        self._id_counter = itertools.count(1)
        self.reset()

    def _new_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):012x}"

    def reset(self) -> None:
        # Compact on purpose: one 4-tuple per message whose strings are the parsed body's own
        # objects, and a set of 2-tuples sharing them; ~100k messages stay in tens of MB.
        self.received: list[tuple[str, str | None, str, float]] = []
        self.seen: set[tuple[str, str]] = set()
        self.duplicates = 0
        self.token_requests = 0
        self.faults_answered = 0
        self.rejected = 0
        self.nexus_messages = 0
        # TCP connections accepted (raw server only): shows a client's pool churning.
        self.connections = 0

    def handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[float, Reply]:
        """Route one request: (seconds to wait before answering, the answer).

        The answer is decided when the request arrives and sent after the delay: the raw server
        waits with loop.call_later (no task per request), the others with asyncio.sleep.
        `headers` is looked up with lower-case names.
        """
        if method == "POST" and path.startswith(MESSAGES_PREFIX) and path.endswith(MESSAGES_SUFFIX):
            account = unquote(path[len(MESSAGES_PREFIX) : -len(MESSAGES_SUFFIX)])
            return self.latency_s, self.send_message(account, headers, body)
        if (
            method == "POST"
            and path.startswith(NEXUS_MESSAGES_PREFIX)
            and path.endswith(MESSAGES_SUFFIX)
        ):
            return self.latency_s, self.nexus_send_message(headers, body)
        if method == "POST" and path.startswith(TOKEN_PREFIX) and path.endswith(TOKEN_SUFFIX):
            account = unquote(path[len(TOKEN_PREFIX) : -len(TOKEN_SUFFIX)])
            return 0.0, self.token(account, headers, body)
        if path.startswith("/_bench/"):
            return 0.0, self.bench_route(method, path, query)
        return 0.0, problem(404, "Not Found", f"No route {method} {path}", anchor="not-found")

    async def dispatch(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        delay, reply = self.handle(method, path, query, headers, body)
        if delay:
            await asyncio.sleep(delay)
        return reply

    # --- AXP routes ------------------------------------------------------------------

    def token(self, account_id: str, headers: Mapping[str, str], body: bytes) -> Reply:
        self.token_requests += 1
        content_type = headers.get("content-type") or ""
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return problem(415, "Unsupported Media Type", "Expected a form", anchor="conflict")
        if account_id != self.account_id:
            return problem(404, "Not Found", "Unknown account", anchor="not-found")
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return constraint_violation(
                [{"field": "grant_type", "message": "must be client_credentials", "code": 20002}],
                "unsupported grant_type",
            )
        if (
            headers.get("appkey") != self.app_key
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return unauthorized()
        now = time.monotonic()
        # Tokens are only issued on request, but drop the expired ones so a long run with a
        # short --token-ttl-s does not accumulate them.
        if len(self.tokens) > 64:
            self.tokens = {k: v for k, v in self.tokens.items() if v > now}
        value = secrets.token_urlsafe(32)
        self.tokens[value] = now + self.token_ttl_s
        return ok({"access_token": value, "expires_in": self.token_ttl_s, "token_type": "Bearer"})

    def send_message(self, account_id: str, headers: Mapping[str, str], body: bytes) -> Reply:
        # Like the simulator: faults come before authentication and validation.
        if self.error_rate and self._random.random() < self.error_rate:
            self.faults_answered += 1
            return self._fault()
        if headers.get("appkey") != self.app_key:
            self.rejected += 1
            return unauthorized()
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        expiry = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= time.monotonic():
            self.rejected += 1
            return unauthorized()
        if account_id != self.account_id:
            self.rejected += 1
            return problem(403, "Forbidden", "Not your account", anchor="forbidden")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.rejected += 1
            return problem(
                400,
                "Bad Request",
                "The request body is not valid JSON",
                anchor="constraint-violation",
            )
        if not isinstance(data, dict):
            self.rejected += 1
            return constraint_violation([], "The body must be an object")
        missing = [name for name in REQUIRED_FIELDS if not data.get(name)]
        if missing:
            self.rejected += 1
            return constraint_violation(
                [{"field": name, "message": "must not be null", "code": 20002} for name in missing],
                "A problem that indicates a syntactically correct, yet semantically illegal "
                "request.",
            )
        message_id = data["providerMessageId"]
        correlation_id = data["correlationId"]
        dialog = data.get("providerDialogId")
        if isinstance(dialog, str):
            dialog = sys.intern(dialog)  # a few hundred conversations, repeated 100k times
        key = (message_id, correlation_id)
        if key in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(key)
        self.received.append((message_id, dialog, correlation_id, time.time()))
        if dialog:
            engagement_id, dialog_id = dialog_ids_of(dialog)
        else:
            dialog = f"sim-{self._new_id()}"
            engagement_id, dialog_id = self._new_id(), self._new_id()
        return ok(
            {
                "messageId": self._new_id(),
                "accountId": self.account_id,
                "dialogId": dialog_id,
                "engagementId": engagement_id,
                "status": "SENT",
                "providerDialogId": dialog,
                "providerMessageId": message_id,
                "correlationId": correlation_id,
            }
        )

    def _fault(self) -> Reply:
        status = self.error_status
        headers = {"Retry-After": self.retry_after} if self.retry_after else None
        if status == 429:
            return problem(
                429,
                "Too Many Requests",
                "Spike limit exhausted",
                anchor="too-many-requests",
                headers=headers,
            )
        if status >= 500:
            return problem(
                status,
                "Internal Server Error",
                "An internal server error was encountered.",
                anchor="internal-error",
                headers=headers,
            )
        return problem(status, "Error", "Injected failure", anchor="error", headers=headers)

    def nexus_send_message(self, headers: Mapping[str, str], body: bytes) -> Reply:
        """Nexus's send message, leanly: signed JSON in, `{status, data: {id}}` out. The
        signature is required, not checked (the bridge's signing is tested elsewhere; here the
        fake's CPU must stay small beside the bridge's)."""
        if not headers.get("x-hub-signature") or not body.startswith(b"{"):
            self.rejected += 1
            return 400, JSON, b'{"status":{"code":400,"message":"unsigned or not JSON"}}', None
        self.nexus_messages += 1
        return ok({"status": {"code": 0, "message": "OK"}, "data": {"id": self._new_id()}})

    # --- bench routes ----------------------------------------------------------------

    def bench_route(self, method: str, path: str, query: str) -> Reply:
        if method == "GET" and path == "/_bench/stats":
            return ok(self.stats())
        if method == "GET" and path == "/_bench/received":
            return ok([(m, d, t) for m, d, _c, t in self.received])
        if method == "POST" and path == "/_bench/reset":
            self.reset()
            return ok({"reset": True})
        if method == "POST" and path == "/_bench/faults":
            params = {k: v[0] for k, v in parse_qs(query).items()}
            try:
                rate = float(params.get("error_rate", "0"))
                status = int(params.get("status", "503"))
            except ValueError:
                return problem(
                    400,
                    "Bad Request",
                    "error_rate: float, status: int",
                    anchor="constraint-violation",
                )
            if not 0 <= rate <= 1 or not 400 <= status <= 599:
                return problem(
                    400,
                    "Bad Request",
                    "error_rate in [0, 1], status 4xx/5xx",
                    anchor="constraint-violation",
                )
            self.error_rate, self.error_status = rate, status
            self.retry_after = params.get("retry_after") or None
            return ok({"error_rate": rate, "status": status, "retry_after": self.retry_after})
        return problem(404, "Not Found", f"No route {method} {path}", anchor="not-found")

    def stats(self) -> dict[str, Any]:
        return {
            "messages": len(self.received),
            "token_requests": self.token_requests,
            "nexus_messages": self.nexus_messages,
            "duplicates": self.duplicates,
            "faults": self.faults_answered,
            "rejected": self.rejected,
            "connections": self.connections,
            # The fake's own cost, so a benchmark can show it was not the bottleneck.
            "cpu_s": time.process_time(),
            "rss_mb": _rss_mb(),
        }


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- server 1: asyncio + httptools -------------------------------------------------------

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def _response_bytes(reply: Reply, keep_alive: bool) -> bytes:
    status, content_type, payload, extra = reply
    head = [
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
        b"content-type: %s\r\ncontent-length: %d\r\n" % (content_type.encode(), len(payload)),
    ]
    if extra:
        head.extend(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in extra.items())
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + payload


class _HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, answering in request order (pipelining-safe).

    No task per request: the answer is computed on arrival and written by a loop timer after
    the latency, which is what keeps this server at a fraction of a client's cost per request.
    """

    def __init__(self, fake: FakeAxp) -> None:
        import httptools

        self._fake = fake
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._parse_error = httptools.HttpParserError
        self._transport: asyncio.Transport | None = None
        # Answers not yet written, oldest first: [bytes or None (still waiting), close after].
        self._pending: collections.deque[list[Any]] = collections.deque()
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones.
        self._transport = transport  # type: ignore[assignment]
        self._fake.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except self._parse_error:
            if self._transport is not None:
                reply = problem(
                    400, "Bad Request", "Unparsable request", anchor="constraint-violation"
                )
                self._transport.write(_response_bytes(reply, False))
                self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method().decode()
        keep_alive = self._parser.should_keep_alive()
        path, _, query = self._url.decode("latin-1").partition("?")
        delay, reply = self._fake.handle(method, path, query, self._headers, b"".join(self._body))
        slot: list[Any] = [None, not keep_alive]
        self._pending.append(slot)
        data = _response_bytes(reply, keep_alive)
        if delay:
            self._loop.call_later(delay, self._ready, slot, data)
        else:
            self._ready(slot, data)

    def _ready(self, slot: list[Any], data: bytes) -> None:
        slot[0] = data
        pending = self._pending
        transport = self._transport
        while pending and pending[0][0] is not None and transport is not None:
            data, close = pending.popleft()
            transport.write(data)
            if close:
                transport.close()
                return


async def serve_raw(fake: FakeAxp, host: str, port: int) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _HttpProtocol(fake), host, port, backlog=4096)


# --- server 2: aiohttp.web low-level server ----------------------------------------------


async def serve_aiohttp(fake: FakeAxp, host: str, port: int) -> asyncio.AbstractServer:
    from aiohttp import web

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        status, content_type, payload, extra = await fake.dispatch(
            request.method, request.path, request.query_string, request.headers, body
        )
        return web.Response(status=status, body=payload, content_type=content_type, headers=extra)

    server = web.Server(handle, access_log=None)
    loop = asyncio.get_running_loop()
    return await loop.create_server(server, host, port, backlog=4096)


# --- server 3: hypercorn (ASGI), for h2c -------------------------------------------------


def asgi_app(fake: FakeAxp) -> Callable[..., Awaitable[None]]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, content_type, payload, extra = await fake.dispatch(
            scope["method"],
            scope["path"],
            scope["query_string"].decode("latin-1"),
            headers,
            b"".join(chunks),
        )
        response_headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(payload)).encode()),
        ]
        if extra:
            response_headers.extend((k.lower().encode(), v.encode()) for k, v in extra.items())
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})

    return app


async def serve_hypercorn(fake: FakeAxp, host: str, port: int, stop: asyncio.Event) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.backlog = 4096
    # Defaults close a connection after 1,000 requests and allow 100 streams per connection;
    # neither is what is being measured.
    config.keep_alive_max_requests = 10**9
    config.h2_max_concurrent_streams = 1024
    config.keep_alive_timeout = 60
    config.graceful_timeout = 1.0  # a stopped benchmark need not wait for idle h2 connections
    await serve(asgi_app(fake), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


# --- main --------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    fake = FakeAxp(latency_s=args.latency_ms / 1000, token_ttl_s=args.token_ttl_s)
    serve = serve_raw if args.server == "raw" else serve_aiohttp
    server = await serve(fake, args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    h2_task = None
    if args.http2:
        h2_port = args.http2_port or args.port + 1
        h2_task = asyncio.create_task(serve_hypercorn(fake, args.host, h2_port, stop))
    print(
        f"fake AXP on http://{args.host}:{args.port} ({args.server})"
        + (f", h2c on http://{args.host}:{h2_port}" if args.http2 else ""),
        flush=True,
    )
    await stop.wait()
    server.close()
    if h2_task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(h2_task, timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--latency-ms", type=float, default=10.0, help="delay before a send's answer"
    )
    parser.add_argument("--token-ttl-s", type=int, default=900, help="expires_in of issued tokens")
    parser.add_argument("--server", choices=("raw", "aiohttp"), default="raw")
    parser.add_argument("--http2", action="store_true", help="also serve h2c via hypercorn")
    parser.add_argument("--http2-port", type=int, default=None, help="default: --port + 1")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            print("uvloop not installed: using the asyncio loop", file=sys.stderr)
        else:
            uvloop.run(main_async(args))
            return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
