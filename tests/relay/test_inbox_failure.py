"""A webhook whose inbox write fails is not acknowledged: 503 (or 500), and nothing is stored.

The write is made to fail inside the group commit and in its one-by-one fallback, as a cut
database would make it; the same webhook, sent again once the database is back, is then a
new event (so the failed attempt really stored nothing). Both routes, both backends.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy import func, select

from channel_bridge.db.models import Delivery, InboxEvent
from channel_bridge.relay.repository import InboxBatchWriter, InboxRepository
from tests.axp.conftest import ACCOUNT_ID, callback_examples
from tests.conftest import TEST_CALLBACK_TOKEN, InProcessClient, make_settings, running_app
from tests.nexus.channels import add_channel
from tests.nexus.test_webhook import MESSAGE, URL, encode, signed_headers, trivial_planner

AXP_URL = f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications"


def _tolerant_client(app: FastAPI) -> httpx.AsyncClient:
    """A 500 is an answer here, not an error to re-raise in the test."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return InProcessClient(transport=transport, base_url="http://bridge.test")


def _cut_database(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    async def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(InboxBatchWriter, "insert_events", fail)
    monkeypatch.setattr(InboxRepository, "insert_if_new", fail)


def _connection_refused() -> Exception:
    return sqlalchemy.exc.OperationalError("INSERT", {}, ConnectionRefusedError("refused"))


async def _counts(sessionmaker) -> tuple[int, int]:
    async with sessionmaker() as session:
        events = await session.scalar(select(func.count()).select_from(InboxEvent))
        deliveries = await session.scalar(select(func.count()).select_from(Delivery))
    return events, deliveries


@pytest.mark.parametrize(
    ("error", "status"), [(_connection_refused(), 503), (RuntimeError("disk full"), 500)]
)
async def test_a_nexus_webhook_is_not_acknowledged_when_the_inbox_write_fails(
    database_url, sessionmaker, monkeypatch, error, status
) -> None:
    settings = make_settings(database_url)
    await add_channel(sessionmaker, settings, MESSAGE["channelId"])
    body = encode(MESSAGE)
    async with running_app(settings) as (app, _client), _tolerant_client(app) as client:
        app.state_now.planners.nexus_message = trivial_planner([])
        with monkeypatch.context() as patch:
            _cut_database(patch, error)
            refused = await client.post(URL, content=body, headers=signed_headers(body))
        assert refused.status_code == status
        assert refused.headers["content-type"] == "application/problem+json"
        assert "messageId" not in refused.json()
        if status == 503:
            assert refused.headers["retry-after"] == "5"
            assert refused.json()["type"].endswith("database-unavailable")
        assert await _counts(sessionmaker) == (0, 0)

        # Nexus redelivers: now it is stored and acknowledged, as a new event.
        accepted = await client.post(URL, content=body, headers=signed_headers(body))
    assert accepted.status_code == 200
    assert accepted.json()["messageId"].startswith("nx-")
    assert await _counts(sessionmaker) == (1, 1)


@pytest.mark.parametrize(
    ("error", "status"), [(_connection_refused(), 503), (RuntimeError("disk full"), 500)]
)
async def test_an_axp_callback_is_not_acknowledged_when_the_inbox_write_fails(
    database_url, sessionmaker, monkeypatch, error, status
) -> None:
    settings = make_settings(database_url, axp_account_id=ACCOUNT_ID)
    data = callback_examples()["Message-Event-Messaging-Agent-To-Customer-File"]
    content = json.dumps(data).encode()
    headers = {"content-type": "application/json"}
    async with running_app(settings) as (app, _client), _tolerant_client(app) as client:
        with monkeypatch.context() as patch:
            _cut_database(patch, error)
            refused = await client.post(AXP_URL, content=content, headers=headers)
        assert refused.status_code == status
        assert refused.headers["content-type"] == "application/problem+json"
        assert await _counts(sessionmaker) == (0, 0)
        accepted = await client.post(AXP_URL, content=content, headers=headers)
    assert accepted.status_code == 200
    assert accepted.json() == {"status": "accepted"}
    events, _deliveries = await _counts(sessionmaker)
    assert events == 1


async def test_a_driver_error_on_the_direct_asyncpg_path_is_a_503_and_nothing_is_stored(
    database_url, sessionmaker, monkeypatch
) -> None:
    """On PostgreSQL the group commit's inserts run on the asyncpg connection itself
    (db/bulk.py): a connection lost there is still a 503, and the transaction is undone."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the direct driver path is PostgreSQL's")
    import asyncpg

    async def lost(connection: asyncpg.Connection, *_args: Any, **_kwargs: Any) -> Any:
        connection.terminate()  # as a cut database leaves it: closed under the pool
        raise asyncpg.exceptions.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation"
        )

    settings = make_settings(database_url)
    await add_channel(sessionmaker, settings, MESSAGE["channelId"])
    body = encode(MESSAGE)
    async with running_app(settings) as (app, _client), _tolerant_client(app) as client:
        app.state_now.planners.nexus_message = trivial_planner([])
        with monkeypatch.context() as patch:
            # SQLAlchemy's own statements go through prepared statements, not Connection.fetch.
            patch.setattr(asyncpg.Connection, "fetch", lost)
            refused = await client.post(URL, content=body, headers=signed_headers(body))
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("database-unavailable")
        assert await _counts(sessionmaker) == (0, 0)
        accepted = await client.post(URL, content=body, headers=signed_headers(body))
        again = await client.post(URL, content=body, headers=signed_headers(body))
    assert accepted.status_code == 200
    # The duplicate is read back on the driver path too: the same stored answer.
    assert again.json() == accepted.json()
    assert await _counts(sessionmaker) == (1, 1)
