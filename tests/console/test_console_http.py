"""The console over HTTP: nothing without the session, CSRF on every form, cookie flags, and
no secret value on any page (both backends)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from channel_bridge.console import router as console
from channel_bridge.console.session import SESSION_COOKIE, ConsoleCookies
from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Channel, Delivery
from channel_bridge.settings import Settings
from tests.conftest import (
    TEST_ADMIN_TOKEN,
    TEST_CALLBACK_TOKEN,
    InProcessClient,
    make_settings,
    running_app,
)
from tests.console.conftest import (
    API_SECRET,
    UI,
    WEBHOOK_SECRET,
    csrf_of,
    log_in,
    page_csrf,
    seed_channel,
    seed_deliveries,
)

# Every console page that shows data, with ids that exist once `seed_*` ran (1 is enough to
# prove the redirect: the check comes before any lookup).
PAGES = [
    UI,
    f"{UI}/deliveries",
    f"{UI}/deliveries?status=dead",
    f"{UI}/deliveries/1",
    f"{UI}/conversations",
    f"{UI}/conversations/1",
    f"{UI}/channels",
]
FORMS = [f"{UI}/deliveries/replay", f"{UI}/deliveries/cancel", f"{UI}/logout"]
# Reachable without a session by design: the login form and the stylesheet.
PUBLIC = {f"{UI}/login", f"{UI}/static/console.css"}


async def status_of(sessionmaker: async_sessionmaker[AsyncSession], delivery_id: int) -> str:
    async with sessionmaker() as session:
        delivery = await session.get(Delivery, delivery_id)
        assert delivery is not None
        return delivery.status


def test_every_console_route_is_covered_by_these_tests() -> None:
    """A new console route must be added to PAGES, FORMS or PUBLIC (so its guard is tested)."""
    declared = {
        (method, route.path)  # type: ignore[attr-defined]
        for route in console.router.routes
        for method in route.methods  # type: ignore[attr-defined]
    }
    tested_paths = {p.split("?")[0] for p in PAGES} | set(FORMS) | PUBLIC
    generic = {path.replace("/1", "/{delivery_id}", 1) for path in tested_paths} | {
        path.replace("/1", "/{conversation_id}", 1) for path in tested_paths
    }
    missing = {(m, p) for m, p in declared if p not in tested_paths | generic}
    assert not missing


@pytest.mark.parametrize("path", PAGES)
async def test_pages_redirect_to_login_without_the_cookie(
    app_client: httpx.AsyncClient, path: str
) -> None:
    response = await app_client.get(path)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(f"{UI}/login?next=")
    assert "csrf_token" not in response.text


@pytest.mark.parametrize("path", FORMS)
async def test_forms_are_refused_without_the_cookie(
    app_client: httpx.AsyncClient, engine: AsyncEngine, path: str
) -> None:
    response = await app_client.post(path, data={"delivery_id": "1", "csrf_token": "x"})
    assert response.status_code == 401
    assert "text/html" in response.headers["content-type"]


async def test_a_forged_or_expired_cookie_is_no_session(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    forged = ConsoleCookies(
        SecretStr("some-other-token-value-0000000000"), ttl_s=3600, secure=False
    ).new_session(now=utcnow())
    expired = console.cookies_for(settings).new_session(now=utcnow() - timedelta(hours=9))
    valid = console.cookies_for(settings).new_session(now=utcnow())
    for value, expected in ((forged, 303), (expired, 303), ("garbage", 303), (valid, 200)):
        app_client.cookies.set(SESSION_COOKIE, value, path=UI)
        assert (await app_client.get(f"{UI}/channels")).status_code == expected
        app_client.cookies.clear()


async def test_login_with_a_wrong_token_sets_no_session(app_client: httpx.AsyncClient) -> None:
    response = await log_in(app_client, token="not-the-admin-token")
    assert response.status_code == 401
    assert "That is not the admin token." in response.text
    assert SESSION_COOKIE not in response.cookies
    assert (await app_client.get(UI)).status_code == 303


async def test_login_sets_an_httponly_samesite_strict_cookie(
    app_client: httpx.AsyncClient,
) -> None:
    response = await log_in(app_client)
    assert response.status_code == 303 and response.headers["location"] == UI
    [cookie] = [
        h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "=")
    ]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower() and f"path={UI}".lower() in cookie.lower()
    assert "secure" not in attributes  # http:// public URL: a Secure cookie would never return
    assert f"max-age={8 * 3600}" in cookie.lower()
    page = await app_client.get(UI)
    assert page.status_code == 200 and "Overview" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["cache-control"] == "no-store"


async def test_the_cookie_is_secure_when_the_public_url_is_https(
    database_url: str, engine: AsyncEngine
) -> None:
    settings = make_settings(database_url, public_base_url="https://bridge.example.net")
    async with running_app(settings) as (app, _client):
        # A Secure cookie is only sent back over https.
        transport = httpx.ASGITransport(app=app)
        async with InProcessClient(transport=transport, base_url="https://bridge.test") as client:
            response = await log_in(client)
            assert (await client.get(UI)).status_code == 200
    assert response.status_code == 303
    cookies = [h.lower() for h in response.headers.get_list("set-cookie")]
    session = [c for c in cookies if c.startswith(SESSION_COOKIE + "=")]
    assert session and all("; secure" in c and "httponly" in c for c in session)


async def test_login_without_its_csrf_token_is_refused(app_client: httpx.AsyncClient) -> None:
    await app_client.get(f"{UI}/login")
    response = await app_client.post(f"{UI}/login", data={"token": TEST_ADMIN_TOKEN, "next": UI})
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.cookies
    # A token from another browser's login form does not fit this browser's login cookie.
    other = httpx.AsyncClient(transport=app_client._transport, base_url=str(app_client.base_url))
    async with other:
        foreign = csrf_of((await other.get(f"{UI}/login")).text)
    response = await app_client.post(
        f"{UI}/login", data={"token": TEST_ADMIN_TOKEN, "csrf_token": foreign, "next": UI}
    )
    assert response.status_code == 403


async def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(
    app_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    seeded = await seed_deliveries(sessionmaker)
    await log_in(app_client)
    for path in (f"{UI}/deliveries/replay", f"{UI}/deliveries/cancel"):
        for data in (
            {"delivery_id": str(seeded.dead_id)},
            {"delivery_id": str(seeded.dead_id), "csrf_token": "forged"},
        ):
            response = await app_client.post(path, data=data)
            assert response.status_code == 403, (path, data)
    assert await status_of(sessionmaker, seeded.dead_id) == "dead"
    assert (await app_client.post(f"{UI}/logout", data={})).status_code == 403
    assert (await app_client.get(UI)).status_code == 200  # still logged in


async def test_replay_and_cancel_a_selection(
    app_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    seeded = await seed_deliveries(sessionmaker)
    await log_in(app_client)
    listing = await app_client.get(f"{UI}/deliveries?status=dead")
    assert f'value="{seeded.dead_id}"' in listing.text
    assert f'value="{seeded.pending_id}"' not in listing.text
    token = csrf_of(listing.text)
    back = f"{UI}/deliveries?status=dead"
    # The dead one is replayed; the delivered one is refused (only with force) and says so.
    response = await app_client.post(
        f"{UI}/deliveries/replay",
        data={
            "csrf_token": token,
            "delivery_id": [str(seeded.dead_id), str(seeded.delivered_id)],
            "next": back,
        },
    )
    assert response.status_code == 303 and response.headers["location"] == back
    page = await app_client.get(back)
    assert f"Replayed 1 delivery: {seeded.dead_id}" in page.text
    assert "already delivered" in page.text
    async with sessionmaker() as session:
        dead = await session.get(Delivery, seeded.dead_id)
        assert dead is not None and (dead.status, dead.attempt_count) == ("pending", 0)
    assert await status_of(sessionmaker, seeded.delivered_id) == "delivered"
    # The notice is shown once.
    assert "Replayed 1 delivery" not in (await app_client.get(back)).text

    response = await app_client.post(
        f"{UI}/deliveries/cancel",
        data={"csrf_token": token, "delivery_id": [str(seeded.dead_id), str(seeded.pending_id)]},
    )
    assert response.status_code == 303
    assert await status_of(sessionmaker, seeded.dead_id) == "cancelled"
    assert await status_of(sessionmaker, seeded.pending_id) == "cancelled"


async def test_a_redirect_target_off_the_console_is_ignored(
    app_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    seeded = await seed_deliveries(sessionmaker)
    await log_in(app_client)
    token = await page_csrf(app_client)
    for target in ("https://evil.example/", "//evil.example/admin/ui", "/admin/v1/channels"):
        response = await app_client.post(
            f"{UI}/deliveries/cancel",
            data={"csrf_token": token, "delivery_id": str(seeded.pending_id), "next": target},
        )
        assert response.headers["location"] == f"{UI}/deliveries", target


async def test_delivery_detail_shows_attempts_and_unknown_ids_are_404(
    app_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    seeded = await seed_deliveries(sessionmaker)
    await log_in(app_client)
    page = await app_client.get(f"{UI}/deliveries/{seeded.dead_id}")
    assert page.status_code == 200
    assert page.text.count("AXP answered 503") >= 3  # last error and both attempts
    assert "where is my parcel?" in page.text
    missing = await app_client.get(f"{UI}/deliveries/999999")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert (await app_client.get(f"{UI}/deliveries/not-a-number")).status_code == 422
    assert (await app_client.get(f"{UI}/deliveries?since=yesterday")).status_code == 400


async def test_markup_in_stored_data_is_escaped(
    app_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    seeded = await seed_deliveries(sessionmaker, error_text='<script>alert("x")</script>')
    await log_in(app_client)
    for path in (f"{UI}/deliveries", f"{UI}/deliveries/{seeded.dead_id}", UI):
        text = (await app_client.get(path)).text
        assert "<script>" not in text
    assert "&lt;script&gt;" in (await app_client.get(f"{UI}/deliveries/{seeded.dead_id}")).text


async def test_no_secret_value_appears_in_any_page(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    # An upstream error that echoed the admin token back: it must be masked when shown.
    async with running_app(settings) as (_app, client):
        await seed_channel(sessionmaker, settings)
        seeded = await seed_deliveries(
            sessionmaker, error_text=f"upstream said: bad token {TEST_ADMIN_TOKEN}"
        )
        async with sessionmaker() as session:
            channel = (await session.scalars(select(Channel))).one()
        await log_in(client)
        pages = [
            UI,
            f"{UI}/deliveries",
            f"{UI}/deliveries/{seeded.dead_id}",
            f"{UI}/conversations",
            f"{UI}/channels",
            f"{UI}/login",
        ]
        texts = []
        for path in pages:
            response = await client.get(path)
            assert response.status_code == 200, path
            texts.append(response.text)
    secrets = [
        TEST_ADMIN_TOKEN,
        TEST_CALLBACK_TOKEN,
        settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
        WEBHOOK_SECRET,
        API_SECRET,
        channel.webhook_secrets_encrypted,
        channel.api_secret_encrypted,
    ]
    for path, text in zip(pages, texts, strict=True):
        for secret in secrets:
            assert secret and secret not in text, (path, secret[:6])
    channels_page = texts[4]
    assert "webhook secret: set (1)" in channels_page and "API secret: set" in channels_page
    assert "/nexus/channels/+15550100300/webhook" in channels_page


async def test_channels_page_lists_callbacks_that_need_review(
    app_client: httpx.AsyncClient,
) -> None:
    # An AXP lifecycle callback naming no integration: held for review, never refused.
    held = await app_client.post(
        f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/integrations", json={"event": "CREATED"}
    )
    assert held.status_code == 200 and held.json()["needsReview"] is True
    await log_in(app_client)
    page = (await app_client.get(f"{UI}/channels")).text
    assert "Held callbacks, oldest first (1)" in page
    assert "body.integrationId" in page
    assert "None: every lifecycle callback was applied." not in page


async def test_logging_out_removes_the_session_cookie(app_client: httpx.AsyncClient) -> None:
    await log_in(app_client)
    response = await app_client.post(
        f"{UI}/logout", data={"csrf_token": await page_csrf(app_client)}
    )
    assert response.status_code == 303 and response.headers["location"] == f"{UI}/login"
    cleared = [h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)]
    assert cleared and "max-age=0" in cleared[0].lower()
    assert (await app_client.get(UI)).status_code == 303
