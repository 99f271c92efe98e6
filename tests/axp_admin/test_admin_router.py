"""Read-only admin HTTP API: /admin/v1/axp/elements and /admin/v1/axp/phone-numbers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import respx
from fastapi import FastAPI

from tests.axp_admin.conftest import (
    ACCOUNT,
    BASE_URL,
    INVENTORY,
    VOICE,
    FakeClock,
    build_admin,
    example,
)
from tests.conftest import TEST_ADMIN_TOKEN, make_settings, running_app

AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
NUMBER_ID = "c8c2909d-75e9-484a-94c0-b7e8d29771fe"
AXP_SETTINGS = {
    "axp_base_url": BASE_URL,
    "axp_account_id": ACCOUNT,
    "axp_client_id": "bridge-client",
    "axp_client_secret": "client-secret-4f9a8b7c6d5e",
    "axp_app_key": "app-key-1a2b3c4d5e6f",
    "axp_subscription_reconcile_enabled": False,
}


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"


@pytest.fixture
async def app_with_admin(
    tmp_path: Path, axp: respx.MockRouter, clock: FakeClock
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app without AXP settings, given an AxpAdmin over the mocked edge."""
    async with running_app(make_settings(_sqlite(tmp_path))) as (app, client):
        async with httpx.AsyncClient(base_url=BASE_URL) as http:
            app.state_now.axp_admin = build_admin(http, clock)
            yield app, client


async def test_admin_token_is_required(app_with_admin, axp: respx.MockRouter) -> None:
    _app, client = app_with_admin
    response = await client.get("/admin/v1/axp/elements")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert axp.calls.call_count == 0


async def test_not_configured_is_503_problem(tmp_path: Path) -> None:
    async with running_app(make_settings(_sqlite(tmp_path))) as (_app, client):
        response = await client.get("/admin/v1/axp/phone-numbers", headers=AUTH)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "AXP is not configured" in response.json()["detail"]


async def test_elements_walk_all_pages_with_filters(app_with_admin, axp: respx.MockRouter) -> None:
    _app, client = app_with_admin
    template = example("element-inventory", "ElementPage")
    first = dict(
        template,
        pagination={"pageNumber": 1, "pageSize": 5, "total": 6},
        elements=template["elements"] * 2 + template["elements"][:1],
    )
    second = dict(
        template,
        pagination={"pageNumber": 2, "pageSize": 5, "total": 6},
        elements=template["elements"][1:],
    )
    route = axp.get(f"{INVENTORY}/elements").mock(
        side_effect=[httpx.Response(200, json=first), httpx.Response(200, json=second)]
    )

    response = await client.get(
        "/admin/v1/axp/elements",
        headers=AUTH,
        params={"type": "DigitalProvider", "orderBy": "name"},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 6 and len(body["elements"]) == 6
    assert body["elements"][-1]["elementSubType"] == "ChatConnector"  # AXP field names
    assert body["elements"][-1]["elementData"]["callbackurl"] == "chat.connector.provider"
    assert [c.request.url.params["filter"] for c in route.calls] == [
        "elementType:DigitalProvider"
    ] * 2
    assert [c.request.url.params["pageNumber"] for c in route.calls] == ["1", "2"]


async def test_phone_numbers_list_and_get(app_with_admin, axp: respx.MockRouter) -> None:
    _app, client = app_with_admin
    page = example("phone-numbers", "PhoneNumberPage")
    page["pagination"]["total"] = 1
    route = axp.get(f"{VOICE}/phone-numbers").respond(200, json=page)
    axp.get(f"{VOICE}/phone-numbers/{NUMBER_ID}").respond(
        200, json=example("phone-numbers", "PhoneNumberInActiveResponse")
    )

    listed = await client.get(
        "/admin/v1/axp/phone-numbers", headers=AUTH, params={"filter": "status:INACTIVE"}
    )
    one = await client.get(f"/admin/v1/axp/phone-numbers/{NUMBER_ID}", headers=AUTH)

    assert listed.status_code == 200 and listed.json()["total"] == 1
    assert listed.json()["phoneNumbers"][0]["statusMessage"].startswith("Verification needed")
    assert route.calls.last.request.url.params["filter"] == "status:INACTIVE"
    assert one.status_code == 200 and one.json()["status"] == "INACTIVE"


async def test_upstream_errors_map_to_problems(app_with_admin, axp: respx.MockRouter) -> None:
    _app, client = app_with_admin
    problem = {"content-type": "application/problem+json"}
    axp.get(f"{VOICE}/phone-numbers/{NUMBER_ID}").respond(
        404, json=example("phone-numbers", "ErrorNotFound"), headers=problem
    )
    axp.get(f"{VOICE}/phone-numbers").respond(
        400, json=example("phone-numbers", "ErrorConstraintViolation"), headers=problem
    )
    axp.get(f"{INVENTORY}/elements").respond(
        403, json=example("element-inventory", "ErrorForbidden"), headers=problem
    )

    missing = await client.get(f"/admin/v1/axp/phone-numbers/{NUMBER_ID}", headers=AUTH)
    refused = await client.get("/admin/v1/axp/phone-numbers", headers=AUTH)
    forbidden = await client.get("/admin/v1/axp/elements", headers=AUTH)

    assert missing.status_code == 404
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"field": "accountId", "message": 'must match "^[a-zA-Z]{6}$"'}
    ]
    # AXP refusing the bridge's own credentials is a gateway problem, not the caller's.
    assert forbidden.status_code == 502 and "HTTP 403 Forbidden" in forbidden.json()["detail"]
    for response in (missing, refused, forbidden):
        assert response.headers["content-type"] == "application/problem+json"


async def test_invalid_queries_are_refused_before_axp(
    app_with_admin, axp: respx.MockRouter
) -> None:
    _app, client = app_with_admin
    catch_all = axp.route().respond(500)

    bad_id = await client.get("/admin/v1/axp/phone-numbers/not-a-uuid", headers=AUTH)
    bad_filter = await client.get("/admin/v1/axp/elements", headers=AUTH, params={"name": "a,b"})

    assert bad_id.status_code == 422 and bad_filter.status_code == 422
    assert bad_filter.json()["errors"][0]["field"] == "name"
    assert not catch_all.called


async def test_admin_is_built_from_settings_over_the_authenticated_client(
    tmp_path: Path, axp: respx.MockRouter
) -> None:
    token = axp.post(f"/api/auth/v1/{ACCOUNT}/protocol/openid-connect/token").respond(
        200, json={"access_token": "axp-token-7c6b5a", "expires_in": 900}
    )
    page = example("phone-numbers", "PhoneNumberPage")
    page["pagination"]["total"] = 1
    listed = axp.get(f"{VOICE}/phone-numbers").respond(200, json=page)
    settings = make_settings(_sqlite(tmp_path), **AXP_SETTINGS)

    async with running_app(settings) as (app, client):
        response = await client.get("/admin/v1/axp/phone-numbers", headers=AUTH)
        again = await client.get("/admin/v1/axp/phone-numbers", headers=AUTH)
        assert app.state_now.axp_admin.account_id == ACCOUNT

    assert response.status_code == 200 and again.status_code == 200
    assert token.call_count == 1
    sent = listed.calls.last.request
    assert sent.headers["authorization"] == "Bearer axp-token-7c6b5a"
    assert sent.headers["appkey"] == "app-key-1a2b3c4d5e6f"
    assert sent.url.params["pageSize"] == "50"  # BRIDGE_AXP_ADMIN_PAGE_SIZE default
