"""ops/fast_path.py: the webhook routes served before the middleware stack give the same answers.

Every case is sent twice to the real app: once on the direct path (`BridgeApp.fast_routes`),
once with it switched off, through FastAPI's middleware stack and router. Status, headers,
body and the metrics each request adds must be the same.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY

from channel_bridge import app as app_module
from channel_bridge.app import BridgeApp, create_app
from channel_bridge.ops.fast_path import FastRoutes, fast_path, fast_routes
from channel_bridge.platforms.nexus import router as nexus_router
from channel_bridge.platforms.nexus.signing import SIGNATURE_HEADER, sign
from channel_bridge.sandbox.mode import DEMO_NEXUS_CHANNEL, DEMO_WEBHOOK_SECRET, seed_demo_channel
from tests.axp.conftest import callback_examples
from tests.conftest import TEST_CALLBACK_TOKEN, make_settings

MAX_BODY = 4096
WEBHOOK = f"/nexus/channels/{DEMO_NEXUS_CHANNEL}/webhook"
CALLBACK = f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications"
PROBLEM = "application/problem+json"
# Fixed, so the two answers can be compared byte for byte.
FIXED = {"X-Request-ID": "req-fast-1", "X-B3-TraceId": "0123456789abcdef0123456789abcdef"}

router = APIRouter()


@router.post("/hooks/{hook_id}/in")
@fast_path
async def marked(hook_id: str, request: Request) -> JSONResponse:
    return JSONResponse({"hook": hook_id})


@router.post("/hooks/{hook_id}/slow")
async def unmarked(hook_id: str) -> dict[str, str]:
    return {"hook": hook_id}


def test_only_marked_routes_are_collected_and_matched() -> None:
    routes = fast_routes(router.routes)
    assert [route.path for route in routes] == ["/hooks/{hook_id}/in"]
    fast = FastRoutes(routes, max_body_bytes=10)
    matched = fast.match({"method": "POST", "path": "/hooks/h-1/in"})
    assert matched is not None and matched[1] == {"hook_id": "h-1"}
    assert fast.match({"method": "GET", "path": "/hooks/h-1/in"}) is None
    assert fast.match({"method": "POST", "path": "/hooks/h-1/slow"}) is None


@asynccontextmanager
async def bridge(database_url: str) -> AsyncIterator[tuple[BridgeApp, httpx.AsyncClient]]:
    app = create_app(make_settings(database_url, max_body_bytes=MAX_BODY))
    async with app.router.lifespan_context(app):
        await seed_demo_channel(app.state_now.sessionmaker, app.state_now.secret_box)
        # The server-error path re-raises to the server, as Starlette's does.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge.test") as client:
            yield app, client


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    wanted = (
        "bridge_http_requests_total",
        "bridge_webhooks_total",
        "bridge_http_request_seconds_count",
    )
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name in wanted
    }


def added(before: dict[Any, float], after: dict[Any, float]) -> dict[Any, float]:
    return {
        key: value - before.get(key, 0)
        for key, value in after.items()
        if value != before.get(key, 0)
    }


def signed(body: bytes) -> dict[str, str]:
    return {
        **FIXED,
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(body, DEMO_WEBHOOK_SECRET, "hex"),
    }


def message(n: int, **fields: Any) -> bytes:
    return json.dumps(
        {
            "id": f"fast-{n}",
            "to": "+15557654321",
            "from": DEMO_NEXUS_CHANNEL,
            "text": "hi",
            **fields,
        }
    ).encode()


async def streamed(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    yield body[len(body) // 2 :]


Send = Callable[[httpx.AsyncClient, int], Any]

CASES: dict[str, Send] = {
    "nexus accepted": lambda c, n: c.post(WEBHOOK, content=message(n), headers=signed(message(n))),
    "nexus bad signature": lambda c, n: c.post(
        WEBHOOK, content=message(n), headers={**signed(b"x"), "Content-Type": "application/json"}
    ),
    "nexus unknown channel": lambda c, n: c.post(
        "/nexus/channels/nobody/webhook", content=b"{}", headers=FIXED
    ),
    "nexus not json": lambda c, n: c.post(
        WEBHOOK, content=b"hi", headers={**signed(b"hi"), "Content-Type": "text/plain"}
    ),
    "nexus unusable": lambda c, n: c.post(
        WEBHOOK, content=message(n, text=None), headers=signed(message(n, text=None))
    ),
    "nexus declared too large": lambda c, n: c.post(
        WEBHOOK, content=b"x" * (MAX_BODY + 1), headers=signed(b"x" * (MAX_BODY + 1))
    ),
    "nexus streamed too large": lambda c, n: c.post(
        WEBHOOK, content=streamed(b"x" * (MAX_BODY + 2)), headers=FIXED
    ),
    "nexus unsafe request id": lambda c, n: c.post(
        "/nexus/channels/nobody/webhook", content=b"{}", headers={"X-Request-ID": "a b"}
    ),
    "axp bad token": lambda c, n: c.post(
        "/axp/callbacks/wrong/notifications", json={}, headers=FIXED
    ),
    "axp not json": lambda c, n: c.post(
        CALLBACK, content=b"{", headers={**FIXED, "Content-Type": "application/json"}
    ),
    "axp wrong media type": lambda c, n: c.post(
        CALLBACK, content=b"{}", headers={**FIXED, "Content-Type": "text/plain"}
    ),
    "axp invalid": lambda c, n: c.post(CALLBACK, json={"eventType": 3}, headers=FIXED),
    "axp declared too large": lambda c, n: c.post(
        CALLBACK,
        content=b"x" * (MAX_BODY + 1),
        headers={**FIXED, "Content-Type": "application/json"},
    ),
}


def axp_message(n: int) -> bytes:
    event = {**callback_examples()["Message-Event-Messaging-Customer-To-Agent-Reply"]}
    event["messageId"] = f"fast-{n}"
    return json.dumps(event).encode()


CASES["axp accepted"] = lambda c, n: c.post(
    CALLBACK, content=axp_message(n), headers={**FIXED, "Content-Type": "application/json"}
)
CASES["axp duplicate"] = lambda c, n: c.post(
    CALLBACK, content=axp_message(-1), headers={**FIXED, "Content-Type": "application/json"}
)
CASES["nexus duplicate"] = lambda c, n: c.post(
    WEBHOOK, content=message(-1), headers=signed(message(-1))
)


def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    headers = list(response.headers.multi_items())
    if response.request.headers.get("x-request-id") != FIXED["X-Request-ID"]:
        # Fresh ids each time: compare their shape, not their value.
        fresh = ("x-request-id", "x-b3-traceid")
        headers = [(k, f"<{len(v)} chars>" if k in fresh else v) for k, v in headers]
    body: Any = response.content
    if response.status_code == 200 and "messageId" in response.json():
        # A fresh acknowledgement id each time a message is new: compare its shape.
        body = {k: f"<{len(v)} chars>" for k, v in response.json().items()}
    return response.status_code, headers, body


async def both_ways(app: BridgeApp, client: httpx.AsyncClient, send: Send) -> list[Any]:
    """The answer and the metrics added, on the direct path and then through the stack."""
    direct = app.fast_routes
    seen = []
    try:
        for n, routes in enumerate((direct, None)):
            app.fast_routes = routes
            before = samples()
            response = await send(client, n)
            seen.append((answer(response), added(before, samples())))
    finally:
        app.fast_routes = direct
    return seen


async def test_the_direct_path_answers_as_the_middleware_stack(database_url: str) -> None:
    async with bridge(database_url) as (app, client):
        # The duplicates' first copies, so both paths below answer a redelivery.
        await CASES["nexus duplicate"](client, 0)
        await CASES["axp duplicate"](client, 0)
        assert app.middleware_stack is None  # nothing so far went through the stack
        for name, send in CASES.items():
            direct, through_stack = await both_ways(app, client, send)
            assert direct == through_stack, name
            assert direct[1], f"{name}: no metrics counted"


async def test_an_unexpected_error_is_the_same_500_and_reaches_the_server(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(nexus_router, "_accept", broken)
    async with bridge(database_url) as (app, client):
        direct, through_stack = await both_ways(app, client, CASES["nexus accepted"])
    assert direct == through_stack
    (status, headers, body), counted = direct
    assert status == 500 and json.loads(body)["type"].endswith("internal-error")
    assert ("x-request-id", FIXED["X-Request-ID"]) in headers
    assert ("content-type", PROBLEM) in headers
    method_route = (("method", "POST"), ("route", "/nexus/channels/{channelId}/webhook"))
    assert counted[("bridge_http_requests_total", (*method_route, ("status", "500")))] == 1
    assert capfd.readouterr().err.count("unhandled error") == 2


def test_the_direct_path_is_off_where_it_would_answer_differently(database_url: str) -> None:
    app = create_app(make_settings(database_url))
    assert app._serves_directly({"root_path": ""})
    assert not app._serves_directly({"root_path": "/bridge"})
    app.debug = True
    assert not app._serves_directly({"root_path": ""})


def test_native_telemetry_is_looked_at_once_a_second_and_kept_once_on(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(make_settings(database_url))
    answers = iter([False, True, False])
    calls: list[int] = []

    def enabled() -> bool:
        calls.append(1)
        return next(answers)

    monkeypatch.setattr(app._native_telemetry, "enabled", enabled)
    clock = [100.0]
    monkeypatch.setattr(app_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))

    assert app._serves_directly({"root_path": ""})
    assert app._serves_directly({"root_path": ""})
    assert len(calls) == 1  # the second request trusted the first look
    clock[0] += app_module.TELEMETRY_RECHECK_S
    assert not app._serves_directly({"root_path": ""})  # a provider was configured meanwhile
    clock[0] += 10 * app_module.TELEMETRY_RECHECK_S
    assert not app._serves_directly({"root_path": ""})
    assert len(calls) == 2  # on stays on: providers are never unset
