"""The worker as it runs in the app: woken by accept (and NOTIFY), stopped with the lifespan."""

from __future__ import annotations

import ast
import asyncio
import pkgutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

import channel_bridge.relay as relay_package
from channel_bridge.db.models import Attempt, Delivery, InboxEvent
from channel_bridge.ops import metrics
from channel_bridge.relay.destinations import DestinationRegistry
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.maintenance import purge_expired, refresh_gauges
from channel_bridge.relay.worker import RelayWorker
from tests.conftest import make_settings, running_app
from tests.relay.conftest import load_delivery

# Poll so rarely that only a wake-up can explain a prompt delivery.
NO_POLLING = {"worker_poll_interval_s": 300.0}


async def test_app_worker_is_woken_by_accept_and_stops_with_the_app(database_url, engine) -> None:
    settings = make_settings(database_url, worker_enabled=True, **NO_POLLING)
    arrived = asyncio.Event()

    async def destination(ctx):
        arrived.set()
        return {"ok": ctx.idempotency_key}

    async with running_app(settings) as (app, _client):
        worker = app.state_now.worker
        assert isinstance(worker, RelayWorker)
        app.state_now.destinations.register("test.sink", destination)
        acceptance = await app.state_now.inbox.accept(
            source="test",
            external_id="e1",
            payload={},
            deliveries=[DeliveryRequest("test.sink", {"x": 1})],
        )
        await asyncio.wait_for(arrived.wait(), timeout=20)
        sessionmaker = app.state_now.sessionmaker
        for _ in range(200):
            delivery = await load_delivery(sessionmaker, acceptance.delivery_ids[0])
            if delivery.status == "delivered":
                break
            await asyncio.sleep(0.02)
        assert delivery.result == {"ok": f"dlv-{delivery.id}"}
    assert worker._loop_task is None  # stopped by the lifespan's exit stack


async def test_app_without_worker(settings, engine) -> None:
    async with running_app(settings) as (app, _client):
        assert app.state_now.worker is None


@pytest.mark.postgres_only
async def test_notify_wakes_a_worker_in_another_process(
    database_url, sessionmaker, backend
) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL only")
    arrived = asyncio.Event()

    async def destination(ctx):
        arrived.set()

    registry = DestinationRegistry()
    registry.register("test.sink", destination)
    worker = RelayWorker(sessionmaker, registry, make_settings(database_url, **NO_POLLING))
    await worker.start()
    try:
        # An inbox that knows nothing of this worker, as in another process: only NOTIFY remains.
        await Inbox(sessionmaker).accept(
            source="test",
            external_id="n1",
            payload={},
            deliveries=[DeliveryRequest("test.sink", {})],
        )
        await asyncio.wait_for(arrived.wait(), timeout=20)
    finally:
        await worker.stop()


@pytest.mark.postgres_only
@pytest.mark.parametrize("path", ["driver", "sqlalchemy"])
async def test_accepted_deliveries_notify_once_per_transaction_and_a_duplicate_not_at_all(
    database_url, sessionmaker, backend, path, monkeypatch
) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL only")
    import logging

    import asyncpg

    if path == "sqlalchemy":
        # While SQLAlchemy's statement log is on, db/bulk.py runs the insert through it.
        engine_log = logging.getLogger("sqlalchemy.engine.Engine")
        monkeypatch.setattr(engine_log, "isEnabledFor", lambda level: level >= logging.INFO)

    from channel_bridge.relay.repository import NOTIFY_CHANNEL

    heard: list[tuple[str, str]] = []
    listener = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    await listener.add_listener(
        NOTIFY_CHANNEL, lambda _conn, _pid, channel, payload: heard.append((channel, payload))
    )
    try:
        inbox = Inbox(sessionmaker)
        event = {"source": "test", "external_id": "n1", "payload": {}}
        # Three deliveries inserted by one statement: one notification, on commit.
        first = await inbox.accept(
            **event, deliveries=[DeliveryRequest("test.sink", {"n": n}) for n in range(3)]
        )
        assert len(first.delivery_ids) == 3
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # time for a second one to arrive, if it were sent
        assert heard == [(NOTIFY_CHANNEL, "")]
        # The duplicate inserts nothing, so it wakes nobody.
        again = await inbox.accept(**event, deliveries=[DeliveryRequest("test.sink", {})])
        assert not again.is_new
        await asyncio.sleep(0.5)
        assert heard == [(NOTIFY_CHANNEL, "")]
    finally:
        await listener.close()


async def test_retention_keeps_dead_and_recent_rows(sessionmaker, settings) -> None:
    inbox = Inbox(sessionmaker)
    ids = []
    for n in range(4):
        ids += (
            await inbox.accept(
                source="t", external_id=f"e{n}", payload={}, deliveries=[DeliveryRequest("d", {})]
            )
        ).delivery_ids
    long_ago = settings.retention_attempts_days + 1
    async with sessionmaker() as session, session.begin():
        from channel_bridge.db.base import utcnow

        old = utcnow() - timedelta(days=long_ago)
        # status and updated_at in one statement: the model's onupdate would reset the time.
        for delivery_id, status, touched in [
            (ids[0], "delivered", old),
            (ids[1], "dead", old),
            (ids[2], "cancelled", old),
            (ids[3], "delivered", utcnow()),
        ]:
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(status=status, updated_at=touched)
            )
        await session.execute(update(InboxEvent).values(received_at=old))
        session.add(Attempt(delivery_id=ids[0], number=1, outcome="delivered", started_at=old))
    counts = await purge_expired(sessionmaker, settings)
    assert counts.deliveries == 2
    async with sessionmaker() as session:
        from sqlalchemy import select

        left = sorted((await session.execute(select(Delivery.id))).scalars())
        assert left == [ids[1], ids[3]]
        assert list((await session.execute(select(Attempt.id))).scalars()) == []
        # Old events whose deliveries are finished (or purged) lose their bodies but stay as
        # dedupe tombstones; the dead one's event stays whole.
        events = (
            await session.execute(
                select(InboxEvent.external_id, InboxEvent.payload, InboxEvent.status).order_by(
                    InboxEvent.external_id
                )
            )
        ).all()
        assert [tuple(row) for row in events] == [
            ("e0", None, "expired"),
            ("e1", {}, "received"),
            ("e2", None, "expired"),
            ("e3", None, "expired"),
        ]
    assert (counts.inbox_events, counts.tombstones) == (3, 0)
    # A second run finds nothing more to strip.
    again = await purge_expired(sessionmaker, settings)
    assert (again.inbox_events, again.tombstones) == (0, 0)


async def test_gauges_reflect_the_outbox(sessionmaker) -> None:
    inbox = Inbox(sessionmaker)
    ids = []
    for n in range(3):
        ids += (
            await inbox.accept(
                source="t", external_id=f"g{n}", payload={}, deliveries=[DeliveryRequest("d", {})]
            )
        ).delivery_ids
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Delivery).where(Delivery.id == ids[0]).values(status="dead"))
    await refresh_gauges(sessionmaker)
    assert metrics.dead_letters._value.get() == 1
    assert metrics.outbox_depth.labels("pending")._value.get() == 2
    assert metrics.outbox_depth.labels("delivered")._value.get() == 0
    assert metrics.outbox_oldest_due_seconds._value.get() >= 0


FORBIDDEN = ("channel_bridge.platforms", "channel_bridge.bridge", "channel_bridge.mappings")


def _relay_modules() -> list[Path]:
    root = Path(relay_package.__file__).parent
    return sorted(root.glob("*.py"))


def test_relay_imports_no_vendor_or_wiring_code() -> None:
    offenders = []
    for path in _relay_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            offenders += [f"{path.name}: {name}" for name in names if name.startswith(FORBIDDEN)]
    assert offenders == []
    assert {p.stem for p in _relay_modules()} >= {"inbox", "worker", "retry", "service", "router"}


def test_importing_the_relay_loads_no_vendor_or_wiring_code() -> None:
    modules = [
        f"channel_bridge.relay.{m.name}" for m in pkgutil.iter_modules(relay_package.__path__)
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}))\n"
        "print(','.join(bad))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert output == ""


async def test_worker_command_runs_and_stops_on_sigterm(
    database_url, sessionmaker, tmp_path
) -> None:
    """`channel-bridge worker` runs the app's worker without HTTP; SIGTERM stops it cleanly."""
    import os
    import signal

    env = {
        **os.environ,
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_ENV": "dev",
        "BRIDGE_SANDBOX": "false",
        "BRIDGE_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "channel_bridge",
        "worker",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output = b""
        async with asyncio.timeout(60):
            while b"running" not in output:
                line = await process.stdout.readline()
                assert line, output.decode()
                output += line
        assert b"relay worker" in output
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
