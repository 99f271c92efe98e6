"""Dead letters and replay through the admin API, the service functions and the CLI."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from channel_bridge.db.base import utcnow
from channel_bridge.db.models import Delivery
from channel_bridge.relay.errors import PermanentError
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.service import mark_delivery_failed
from tests.conftest import TEST_ADMIN_TOKEN, running_app
from tests.relay.conftest import load_attempts, load_delivery, queue_in_partition

AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


async def _queue(sessionmaker, count: int, *, partition: str | None = None, prefix: str = "e"):
    return await queue_in_partition(Inbox(sessionmaker), partition, count, prefix=prefix)


async def _set(sessionmaker, delivery_id: int, **values) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))


@pytest.fixture
async def admin(settings, engine):
    async with running_app(settings) as (app, client):
        yield app, client


async def test_admin_requires_the_bearer_token(admin) -> None:
    _app, client = admin
    response = await client.get("/admin/v1/deliveries")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    wrong = await client.get("/admin/v1/deliveries", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


async def test_list_filters_and_cursor_pagination(admin, sessionmaker) -> None:
    _app, client = admin
    ids = await _queue(sessionmaker, 5, partition="conv-1")
    other = await _queue(sessionmaker, 2, prefix="o")
    await _set(sessionmaker, ids[0], status="dead", last_error="HTTP 400: bad")

    first = await client.get("/admin/v1/deliveries", params={"limit": 3}, headers=AUTH)
    assert first.status_code == 200
    body = first.json()
    assert [d["id"] for d in body["items"]] == sorted(ids + other, reverse=True)[:3]
    second = await client.get(
        "/admin/v1/deliveries", params={"limit": 3, "cursor": body["next_cursor"]}, headers=AUTH
    )
    page2 = second.json()
    assert [d["id"] for d in page2["items"]] == sorted(ids + other, reverse=True)[3:6]
    third = await client.get(
        "/admin/v1/deliveries", params={"limit": 3, "cursor": page2["next_cursor"]}, headers=AUTH
    )
    assert [d["id"] for d in third.json()["items"]] == [min(ids)]
    assert third.json()["next_cursor"] is None

    dead = await client.get("/admin/v1/deliveries", params={"status": "dead"}, headers=AUTH)
    assert [(d["id"], d["last_error"]) for d in dead.json()["items"]] == [(ids[0], "HTTP 400: bad")]
    partition = await client.get(
        "/admin/v1/deliveries", params={"partition": "conv-1", "limit": 50}, headers=AUTH
    )
    assert sorted(d["id"] for d in partition.json()["items"]) == ids
    future = (utcnow() + timedelta(days=1)).isoformat()
    empty = await client.get("/admin/v1/deliveries", params={"since": future}, headers=AUTH)
    assert empty.json()["items"] == []


async def test_list_rejects_bad_input_with_problem_json(admin) -> None:
    _app, client = admin
    cases = [
        {"status": "lost"},
        {"cursor": "%%%"},
        {"limit": 0},
        {"since": "2026-11-24T10:00:00Z", "until": "2026-11-24T09:00:00Z"},
        {"since": "2026-11-24T10:00:00"},  # no offset: ambiguous
        # PostgreSQL text cannot hold NUL: refused here, never a failed query (500).
        {"destination": "\x00"},
        {"partition": "a\x00b"},
    ]
    for params in cases:
        response = await client.get("/admin/v1/deliveries", params=params, headers=AUTH)
        assert response.status_code in (400, 422), params
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"], params


async def test_show_includes_payload_and_attempts(admin, sessionmaker, registry) -> None:
    _app, client = admin
    (delivery_id,) = await _queue(sessionmaker, 1)
    async with sessionmaker() as session, session.begin():
        from channel_bridge.relay.repository import DeliveryRepository

        await DeliveryRepository(session).add_attempts(
            [
                {
                    "delivery_id": delivery_id,
                    "number": 1,
                    "worker_id": "w",
                    "started_at": utcnow(),
                    "duration_ms": 12.5,
                    "outcome": "retry",
                    "http_status": 503,
                    "error_class": "retryable",
                    "error": "HTTP 503: busy",
                    "response_excerpt": "busy",
                }
            ]
        )
    response = await client.get(f"/admin/v1/deliveries/{delivery_id}", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["payload"] == {"n": 0}
    assert [(a["number"], a["outcome"], a["http_status"]) for a in body["attempts"]] == [
        (1, "retry", 503)
    ]
    missing = await client.get("/admin/v1/deliveries/999999", headers=AUTH)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_replay_of_a_dead_delivery_delivers_it(
    admin, sessionmaker, registry, sink, worker, clock
) -> None:
    _app, client = admin
    sink.script = lambda ctx: (
        PermanentError("rejected", http_status=400) if len(sink.calls) == 1 else None
    )
    (delivery_id,) = await _queue(sessionmaker, 1)
    await _set(sessionmaker, delivery_id, next_attempt_at=clock.now())
    await worker.run_once()
    assert (await load_delivery(sessionmaker, delivery_id)).status == "dead"

    response = await client.post(f"/admin/v1/deliveries/{delivery_id}/replay", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["attempt_count"]) == ("pending", 0)
    # Replay schedules at the real "now"; the worker's manual clock must catch up.
    clock.set(utcnow() + timedelta(seconds=1))
    assert await worker.run_once() == 1
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert (delivery.status, delivery.attempt_count) == ("delivered", 1)
    assert [a.outcome for a in await load_attempts(sessionmaker, delivery_id)] == [
        "dead",
        "delivered",
    ]
    assert [c.idempotency_key for c in sink.calls] == [f"dlv-{delivery_id}"] * 2


async def test_replay_of_a_delivered_one_needs_force(admin, sessionmaker) -> None:
    _app, client = admin
    (delivery_id,) = await _queue(sessionmaker, 1)
    await _set(sessionmaker, delivery_id, status="delivered", attempt_count=1)
    conflict = await client.post(f"/admin/v1/deliveries/{delivery_id}/replay", headers=AUTH)
    assert conflict.status_code == 409
    assert "force" in conflict.json()["detail"]
    assert (await load_delivery(sessionmaker, delivery_id)).status == "delivered"
    forced = await client.post(
        f"/admin/v1/deliveries/{delivery_id}/replay", params={"force": "true"}, headers=AUTH
    )
    assert forced.status_code == 200 and forced.json()["status"] == "pending"


async def test_replay_all_dead_in_a_window(admin, sessionmaker) -> None:
    _app, client = admin
    ids = await _queue(sessionmaker, 4)
    old = utcnow() - timedelta(days=20)
    for delivery_id in ids[:3]:
        await _set(sessionmaker, delivery_id, status="dead")
    await _set(sessionmaker, ids[2], created_at=old)  # dead, but outside the window
    now = utcnow()
    window = {
        "since": (now - timedelta(days=1)).isoformat(),
        "until": (now + timedelta(minutes=1)).isoformat(),
    }
    response = await client.post("/admin/v1/deliveries/replay", json=window, headers=AUTH)
    assert response.json() == {"replayed": 2}
    statuses = [(await load_delivery(sessionmaker, i)).status for i in ids]
    assert statuses == ["pending", "pending", "dead", "pending"]

    too_wide = {"since": (now - timedelta(days=15)).isoformat(), "until": now.isoformat()}
    rejected = await client.post("/admin/v1/deliveries/replay", json=too_wide, headers=AUTH)
    assert rejected.status_code == 400
    assert rejected.json()["errors"][0]["field"] == "until"


async def test_cancel(admin, sessionmaker) -> None:
    _app, client = admin
    pending, delivered = await _queue(sessionmaker, 2)
    await _set(sessionmaker, delivered, status="delivered")
    response = await client.post(f"/admin/v1/deliveries/{pending}/cancel", headers=AUTH)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = await client.post(f"/admin/v1/deliveries/{pending}/cancel", headers=AUTH)
    assert again.status_code == 200
    refused = await client.post(f"/admin/v1/deliveries/{delivered}/cancel", headers=AUTH)
    assert refused.status_code == 409


async def test_mark_delivery_failed_records_reason_without_resending(
    sessionmaker, worker, sink, clock
) -> None:
    (delivery_id,) = await _queue(sessionmaker, 1)
    await _set(sessionmaker, delivery_id, next_attempt_at=clock.now())
    await worker.run_once()
    async with sessionmaker() as session, session.begin():
        delivery = await mark_delivery_failed(
            session, delivery_id, "upstream reported: undeliverable"
        )
        assert delivery.status == "dead"
    stored = await load_delivery(sessionmaker, delivery_id)
    assert stored.status == "dead"
    assert stored.last_error == "upstream reported: undeliverable"
    assert stored.result["remoteId"] == f"r-{delivery_id}"
    assert stored.result["failure"]["reason"] == "upstream reported: undeliverable"
    assert stored.result["failure"]["previous_status"] == "delivered"
    clock.advance(10**6)
    assert await worker.run_once() == 0
    assert len(sink.calls) == 1


async def test_cli_lists_shows_replays_and_cancels(database_url, sessionmaker, monkeypatch) -> None:
    from channel_bridge.cli import app as cli_app

    ids = await _queue(sessionmaker, 3, partition="conv-cli")
    await _set(sessionmaker, ids[0], status="dead", last_error="HTTP 400: rejected")
    monkeypatch.setenv("BRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BRIDGE_ENV", "dev")
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()

    async def invoke(*args: str):
        # The CLI runs its own event loop (asyncio.run), so it gets a thread of its own.
        return await asyncio.to_thread(runner.invoke, cli_app, list(args))

    listed = await invoke("deliveries", "list", "--status", "dead")
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.output.splitlines() if line.startswith("│")]
    assert len(rows) == 1  # the one dead delivery (the header uses heavy lines)
    assert rows[0].split("│")[1].strip() == str(ids[0])
    assert "HTTP 400: rejected" in rows[0] and "dead" in rows[0]

    shown = await invoke("deliveries", "show", str(ids[0]))
    assert shown.exit_code == 0 and "conv-cli" in shown.output

    replayed = await invoke("deliveries", "replay", str(ids[0]))
    assert replayed.exit_code == 0, replayed.output
    assert (await load_delivery(sessionmaker, ids[0])).status == "pending"

    cancelled = await invoke("deliveries", "cancel", str(ids[1]))
    assert cancelled.exit_code == 0
    assert (await load_delivery(sessionmaker, ids[1])).status == "cancelled"

    missing = await invoke("deliveries", "show", "999999")
    assert missing.exit_code == 4 and "does not exist" in missing.output
