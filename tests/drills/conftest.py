"""Drill fixtures: a fresh PostgreSQL database per drill, the AXP simulator on loopback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from channel_bridge.db.migrate import upgrade
from channel_bridge.sandbox.axp import AxpSimulator
from tests.drills.harness import (
    SCALE,
    BridgeProcess,
    LoopbackServer,
    Side,
    make_axp_simulator,
    seed_database,
    side_for,
)
from tests.support.postgres import PostgresServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A drill's time limit grows with its size (the default 300 s is for scale 1)."""
    for item in items:
        if "tests/drills/" in str(item.fspath):
            item.add_marker(pytest.mark.timeout(300 * max(1.0, SCALE)))


@pytest.fixture
def drill_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A migrated, seeded PostgreSQL database of its own (the drills never share one)."""
    name = f"drill_{uuid.uuid4().hex[:8]}"
    janitor = postgres_server.janitor(name)
    janitor.init()
    url = postgres_server.url(name)
    upgrade(url)
    try:
        yield url
    finally:
        janitor.drop()


@pytest.fixture
async def seeded_database(drill_database: str) -> str:
    await seed_database(drill_database)
    return drill_database


@pytest.fixture
async def axp() -> AsyncIterator[tuple[AxpSimulator, LoopbackServer]]:
    """The AXP simulator answering in ~10 ms, on 127.0.0.1."""
    sim = make_axp_simulator(latency_s=0.01)
    server = LoopbackServer(sim.app)
    await server.start()
    try:
        yield sim, server
    finally:
        await server.stop()


@pytest.fixture
def bridges(tmp_path: Path) -> Iterator[list[BridgeProcess]]:
    """Bridge processes a drill starts are stopped (SIGTERM, then SIGKILL) at the end."""
    started: list[BridgeProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture(params=["nexus", "genesys-cloud"])
def side(request: pytest.FixtureRequest) -> Side:
    """Which Genesys backend's webhook carries the drill's load (both, one run each)."""
    return side_for(request.param)
