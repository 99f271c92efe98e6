"""Ops endpoints, error shape and request ids."""

from __future__ import annotations


async def test_healthz_and_readyz(app_client) -> None:
    assert (await app_client.get("/healthz")).json() == {"status": "ok"}
    response = await app_client.get("/readyz")
    assert response.status_code == 200 and response.json()["status"] == "ready"


async def test_unknown_route_is_problem_json_with_request_id(app_client) -> None:
    response = await app_client.get("/nope", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["status"] == 404


async def test_injected_request_id_is_replaced(app_client) -> None:
    response = await app_client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert response.headers["x-request-id"] != "a b\tc"
    assert len(response.headers["x-request-id"]) == 32


async def test_metrics_use_route_templates(app_client) -> None:
    await app_client.get("/healthz")
    body = (await app_client.get("/metrics")).text
    assert 'bridge_http_requests_total{method="GET",route="/healthz",status="200"}' in body
