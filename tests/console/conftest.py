"""Console test kit: logging in over HTTP, and stored rows for the pages to show."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Attempt, Channel, Delivery, Integration
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings
from tests.conftest import TEST_ADMIN_TOKEN

UI = "/admin/ui"
CHANNEL = "+15550100300"
CUSTOMER = "+15557654321"
INTEGRATION_ID = "console-integration-0001"
WEBHOOK_SECRET = "console-webhook-secret-8d1f3a5c7e9b"
API_SECRET = "console-api-secret-2b4d6f8a0c1e"

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def log_in(client: httpx.AsyncClient, token: str = TEST_ADMIN_TOKEN) -> httpx.Response:
    """The login form, filled in and posted, as a browser would."""
    form = await client.get(f"{UI}/login")
    assert form.status_code == 200
    return await client.post(
        f"{UI}/login", data={"csrf_token": csrf_of(form.text), "token": token, "next": UI}
    )


async def page_csrf(client: httpx.AsyncClient, path: str = UI) -> str:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return csrf_of(response.text)


@dataclass
class Seeded:
    dead_id: int
    delivered_id: int
    pending_id: int


async def seed_channel(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    assert settings.secret_key is not None
    box = SecretBox(settings.secret_key)
    now = utcnow()
    async with sessionmaker() as session, session.begin():
        session.add(
            Integration(
                integration_id=INTEGRATION_ID,
                name="Console messaging",
                account_id="CONSOL",
                channel_provider_id="console-provider",
                status="active",
                source="admin",
                created_at=now,
                updated_at=now,
            )
        )
        await session.flush()
        session.add(
            Channel(
                nexus_channel_id=CHANNEL,
                axp_account_id="CONSOL",
                axp_channel_provider_id="console-provider",
                axp_integration_id=INTEGRATION_ID,
                axp_channel_id="Messaging",
                customer_identifier_key="phoneNumbers",
                enabled=True,
                webhook_secrets_encrypted=box.encrypt_list([WEBHOOK_SECRET]),
                api_secret_encrypted=box.encrypt(API_SECRET),
                created_at=now,
                updated_at=now,
            )
        )


async def seed_deliveries(
    sessionmaker: async_sessionmaker[AsyncSession], *, error_text: str = "AXP answered 503"
) -> Seeded:
    """A dead delivery with two failed attempts, a delivered one and a pending one."""
    now = utcnow()
    partition = f"n2a:{CHANNEL}:{CUSTOMER}"

    def delivery(status: str, **values: object) -> Delivery:
        return Delivery(
            destination="axp.send_message",
            partition_key=partition,
            sequence=0,
            payload={"text": "where is my parcel?", "customer": CUSTOMER},
            status=status,
            attempt_count=values.pop("attempt_count", 0),
            next_attempt_at=now,
            created_at=now - timedelta(minutes=5),
            updated_at=now,
            skipped=False,
            **values,
        )

    async with sessionmaker() as session, session.begin():
        dead = delivery("dead", attempt_count=2, last_error=error_text)
        delivered = delivery("delivered", attempt_count=1, delivered_at=now)
        pending = delivery("pending")
        session.add_all([dead, delivered, pending])
        await session.flush()
        for number, outcome in ((1, "retry"), (2, "dead")):
            session.add(
                Attempt(
                    delivery_id=dead.id,
                    number=number,
                    started_at=now - timedelta(minutes=2),
                    duration_ms=12.5,
                    outcome=outcome,
                    http_status=503,
                    error_class="unavailable",
                    error=error_text,
                    response_excerpt='{"error": "' + error_text + '"}',
                )
            )
        session.add(
            Attempt(
                delivery_id=delivered.id,
                number=1,
                started_at=now - timedelta(minutes=1),
                duration_ms=8.0,
                outcome="delivered",
                http_status=200,
            )
        )
        return Seeded(dead.id, delivered.id, pending.id)
