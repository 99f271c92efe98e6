"""The sandbox simulates AXP, Nexus and Akixi for every channel and integration the operator
creates (admin API or CLI), not only its seeded demo channel: a message on a new channel
crosses both ways with no dead letter."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from channel_bridge.db.models import Delivery
from channel_bridge.platforms.nexus.signing import SIGNATURE_HEADER, sign
from channel_bridge.sandbox.mode import DEMO_NEXUS_CHANNEL
from tests.conftest import TEST_ADMIN_TOKEN, make_settings, running_app

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
WEBHOOK_SECRET = "operator-webhook-secret-0123456789abcdef"
API_SECRET = "operator-api-secret-0123456789abcdef0123"
CHANNEL = "+15550109999"


async def _until_replied(app) -> list[Delivery]:  # type: ignore[no-untyped-def]
    """Every delivery once the simulated agent's reply has reached the simulated Nexus."""
    rows: list[Delivery] = []
    for _ in range(300):
        async with app.state_now.sessionmaker() as session:
            rows = list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())
        replied = any(c.channel_id == CHANNEL for c in app.state_now.sandbox.nexus.calls("message"))
        if replied and all(row.status in ("delivered", "dead") for row in rows):
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError([(row.destination, row.status, row.last_error) for row in rows])


async def create_operator_channel(client) -> None:  # type: ignore[no-untyped-def]
    """An integration and a channel as an operator makes them (admin API)."""
    created = await client.post(
        "/admin/v1/integrations",
        headers=ADMIN,
        json={
            "integration_id": "operator-integration",
            "name": "Operator messaging",
            "channel_provider_id": "operator-provider",
            "account_id": "SANDBX",
        },
    )
    assert created.status_code == 201, created.text
    created = await client.post(
        "/admin/v1/channels",
        headers=ADMIN,
        json={
            "nexus_channel_id": CHANNEL,
            "axp_integration_id": "operator-integration",
            "webhook_secret": WEBHOOK_SECRET,
            "api_secret": API_SECRET,
        },
    )
    assert created.status_code == 201, created.text


async def test_a_channel_created_through_the_admin_api_relays_both_ways(
    database_url, engine, sessionmaker
) -> None:
    settings = make_settings(database_url, sandbox=None, worker_enabled=True)
    async with running_app(settings) as (app, client):
        await create_operator_channel(client)
        body = b'{"id":"op-1","to":"+15557650000","text":"hello from a new channel"}'
        response = await client.post(
            f"/nexus/channels/{CHANNEL}/webhook",
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(body, WEBHOOK_SECRET, "hex"),
            },
        )
        assert response.status_code == 200, response.text
        # Nexus -> AXP, then AXP's receipt and its simulated agent's reply back to Nexus.
        rows = await _until_replied(app)
        sandbox = app.state_now.sandbox
    assert [(r.destination, r.status, r.last_error) for r in rows if r.status != "delivered"] == []
    sent = [m for m in sandbox.axp.messages if "hello from a new channel" in str(m)]
    assert sent, "AXP received the message"
    replies = [c for c in sandbox.nexus.calls("message") if c.channel_id == CHANNEL]
    assert replies and "hello from a new channel" in replies[0].body.decode()


async def test_a_new_secret_key_re_seeds_the_demo_channel_and_names_stranded_channels(
    database_url, engine, sessionmaker, capsys
) -> None:
    """Copying .env.example to .env after a first run changes BRIDGE_SECRET_KEY: the demo
    channel still works, and a channel the operator made is named with the fix."""
    first = make_settings(database_url, sandbox=None, secret_key="first-key-0123456789abcdef0123")
    async with running_app(first) as (_app, client):
        await create_operator_channel(client)
    capsys.readouterr()
    second = make_settings(database_url, sandbox=None, secret_key="other-key-0123456789abcdef0123")
    async with running_app(second) as (app, client):
        body, headers = app.state_now.sandbox.nexus.signed_webhook(
            DEMO_NEXUS_CHANNEL, {"id": "m-after-new-key", "to": "+15557654321", "text": "hi"}
        )
        response = await client.post(
            f"/nexus/channels/{DEMO_NEXUS_CHANNEL}/webhook", content=body, headers=headers
        )
    assert response.status_code == 200, response.text
    err = capsys.readouterr().err
    assert "sandbox demo channel re-seeded" in err
    stranded = [line for line in err.splitlines() if "cannot be decrypted" in line]
    assert len(stranded) == 1 and CHANNEL in stranded[0]
    assert f"channel-bridge channels update {CHANNEL}" in stranded[0]
    assert WEBHOOK_SECRET not in err and API_SECRET not in err
