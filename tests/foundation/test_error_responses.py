"""Error responses: problem+json, an X-Request-ID on every one (500 included), and never a
secret in the body or in the log line the failure writes. /metrics carries process metrics."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from channel_bridge.app import create_app
from channel_bridge.deps import AdminDep
from channel_bridge.errors import BadRequest
from tests.conftest import TEST_ADMIN_TOKEN, TEST_CALLBACK_TOKEN, make_settings

LEAKY = f"upstream-said-{secrets.token_hex(16)}"
OTHER_SECRETS = {
    "axp_client_secret": f"axp-client-{secrets.token_hex(16)}",
    "nexus_api_key": f"nexus-key-{secrets.token_hex(16)}",
}


class Order(BaseModel):
    count: int
    note: str


@asynccontextmanager
async def app_with_failing_routes(
    tmp_path: Path,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}", **OTHER_SECRETS)
    app = create_app(settings)
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else ""

    @app.get("/test/crash")
    async def crash() -> None:
        # The worst case: an exception whose message carries secrets.
        raise RuntimeError(f"token {TEST_ADMIN_TOKEN} key {secret_key} {OTHER_SECRETS}")

    @app.post("/test/orders")
    async def orders(order: Order) -> dict[str, int]:
        return {"count": order.count}

    @app.get("/test/admin", dependencies=[AdminDep])
    async def admin_only() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/test/bad")
    async def bad() -> None:
        raise BadRequest("The channel id is not known")

    async with app.router.lifespan_context(app):
        # raise_app_exceptions=False: see the 500 response the client gets, as a real server would.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge.test") as client:
            yield app, client


def all_secret_values() -> list[str]:
    values = [TEST_ADMIN_TOKEN, TEST_CALLBACK_TOKEN, LEAKY, *OTHER_SECRETS.values()]
    values.append(make_settings("sqlite+aiosqlite://").secret_key.get_secret_value())  # type: ignore[union-attr]
    return values


async def test_every_error_is_problem_json_with_a_request_id_and_no_secret(tmp_path, capfd) -> None:
    async with app_with_failing_routes(tmp_path) as (_app, client):
        requests = {
            500: client.get("/test/crash"),
            422: client.post("/test/orders", json={"count": LEAKY, "note": TEST_ADMIN_TOKEN}),
            401: client.get("/test/admin", headers={"Authorization": f"Bearer {LEAKY}"}),
            400: client.get("/test/bad"),
            404: client.get(f"/axp/nowhere/{TEST_CALLBACK_TOKEN}"),
            405: client.delete("/healthz"),
            413: client.post(
                "/test/orders",
                content=b"x" * (1024 * 1024 + 1),
                headers={"content-type": "application/json"},
            ),
        }
        for status, pending in requests.items():
            response = await pending
            assert response.status_code == status, (status, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            body = response.json()
            assert body["status"] == status and body["title"] and body["detail"]
            assert len(response.headers.get("x-request-id", "")) == 32, (status, response.headers)
            for value in all_secret_values():
                assert value not in response.text, f"a secret is in the {status} body"
            assert "Traceback" not in response.text and "RuntimeError" not in response.text

    out, err = capfd.readouterr()
    assert "unhandled error" in err  # the 500 was logged ...
    for value in all_secret_values():
        assert value not in out + err  # ... without its secrets


async def test_validation_errors_name_fields_without_echoing_input(tmp_path) -> None:
    async with app_with_failing_routes(tmp_path) as (_app, client):
        response = await client.post("/test/orders", json={"count": LEAKY})
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"body.count", "body.note"}
    assert LEAKY not in response.text


async def test_a_client_request_id_is_echoed_on_errors_too(tmp_path) -> None:
    async with app_with_failing_routes(tmp_path) as (_app, client):
        for path in ("/test/crash", "/test/bad", "/nope", "/healthz"):
            response = await client.get(path, headers={"X-Request-ID": "req-42.a:b"})
            assert response.headers["x-request-id"] == "req-42.a:b", path


async def test_metrics_expose_process_and_http_metrics(tmp_path) -> None:
    async with app_with_failing_routes(tmp_path) as (_app, client):
        await client.get("/test/bad")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for metric in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
    ):
        assert f"\n{metric}" in text, metric
    assert 'bridge_http_requests_total{method="GET",route="/test/bad",status="400"}' in text


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_ops_endpoints_need_no_credentials(path: str, tmp_path) -> None:
    async with app_with_failing_routes(tmp_path) as (_app, client):
        response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["x-request-id"]
