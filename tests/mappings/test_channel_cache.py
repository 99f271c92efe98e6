"""The webhook's channel cache: one query per channel per TTL, cleared by admin writes."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import event, update
from sqlalchemy.engine import make_url

from channel_bridge.db.models import Channel
from channel_bridge.db.notifications import DatabaseNotifications
from channel_bridge.mappings.channel_cache import ChannelCache
from channel_bridge.platforms.nexus.signing import sign
from tests.mappings.conftest import ADMIN, WEBHOOK_SECRET, add_channel, add_integration
from tests.support.waiting import eventually

CHANNEL = "+15559870000"


def _count_selects(engine) -> list[str]:
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT") and "channels" in statement:
            seen.append(statement)

    return seen


async def test_hits_within_ttl_share_one_query_and_expire(engine, sessionmaker, bridge) -> None:
    _app, client = bridge
    await add_integration(client)
    await add_channel(client)
    now = [100.0]
    cache = ChannelCache(sessionmaker, ttl_s=5, clock=lambda: now[0])
    selects = _count_selects(engine)
    results = await asyncio.gather(*[cache.get_enabled(CHANNEL) for _ in range(20)])
    assert {r.nexus_channel_id for r in results} == {CHANNEL}
    assert len(selects) == 1  # single flight for concurrent misses
    await cache.get_enabled(CHANNEL)
    assert len(selects) == 1
    now[0] += 5.1
    await cache.get_enabled(CHANNEL)
    assert len(selects) == 2


async def test_unknown_and_disabled_channels_are_not_cached(sessionmaker, bridge) -> None:
    _app, client = bridge
    await add_integration(client)
    cache = ChannelCache(sessionmaker, ttl_s=60)
    assert await cache.get_enabled(CHANNEL) is None
    await add_channel(client)
    assert (await cache.get_enabled(CHANNEL)) is not None
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Channel).values(enabled=False))
    cache.invalidate()
    assert await cache.get_enabled(CHANNEL) is None


async def test_admin_disable_takes_effect_on_the_next_webhook(bridge) -> None:
    _app, client = bridge
    await add_integration(client)
    await add_channel(client)
    body = json.dumps({"id": "m-1", "to": "+15551230000", "text": "hi"}).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(body, WEBHOOK_SECRET)}
    url = f"/nexus/channels/{CHANNEL}/webhook"
    assert (await client.post(url, content=body, headers=headers)).status_code == 200  # cached now
    response = await client.post(f"/admin/v1/channels/{CHANNEL}/disable", headers=ADMIN)
    assert response.status_code == 200
    again = await client.post(url, content=body, headers=headers)
    assert again.status_code == 404
    assert again.headers["content-type"] == "application/problem+json"


async def test_a_write_in_another_process_clears_the_cache_through_notify(
    database_url, sessionmaker, bridge, backend
) -> None:
    """Another replica's cache (its own LISTEN connection) hears of an admin disable at once,
    long before its TTL would have let the entry expire."""
    if backend != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's; on SQLite the TTL bounds another process")
    _app, client = bridge
    await add_integration(client)
    await add_channel(client)
    replica = ChannelCache(sessionmaker, ttl_s=300)
    notifications = DatabaseNotifications(make_url(database_url))
    await replica.listen(notifications)
    assert await notifications.ensure_connected()
    try:
        assert (await replica.get_enabled(CHANNEL)) is not None
        disabled = await client.post(f"/admin/v1/channels/{CHANNEL}/disable", headers=ADMIN)
        assert disabled.status_code == 200, disabled.text

        async def stopped() -> bool:
            return await replica.get_enabled(CHANNEL) is None

        await eventually(stopped, timeout_s=5, what="the other replica to see the disable")
    finally:
        await notifications.close()
