"""Shared fixtures: every DB test runs on both SQLite and a real PostgreSQL 15."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx.mocks
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from channel_bridge.app import BridgeApp, create_app
from channel_bridge.db.base import metadata
from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.db.migrate import upgrade
from channel_bridge.settings import Settings
from tests.support.plans import record_sent_statements
from tests.support.postgres import PostgresServer, destroy, start_postgres

os.environ.setdefault("BRIDGE_ENV", "dev")
# respx's default mocker patches httpcore's pool, which the bridge's aiohttp transport never
# reaches; the httpx mocker patches the client's transport choice, whatever the transport.
respx.mocks.DEFAULT_MOCKER = "httpx"
FIXTURES = Path(__file__).parent / "fixtures"

# Callbacks to a test app use this token; ≥ 32 characters like a real one.
TEST_CALLBACK_TOKEN = "cb-test-token-6f1d0c2a9b8e7d6c5b4a3f2e1d0c9b8a"
TEST_ADMIN_TOKEN = "admin-test-token-4b7c1e9a2f6d8c3b5a0e"
TEST_SECRET_KEY = "test-secret-key-9c8b7a6f5e4d3c2b1a0f9e8d"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        destroy(server)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database per backend, shared by the session; tables are emptied per test."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'bridge.db'}"
        upgrade(url)
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    janitor = server.janitor("bridge_test")
    janitor.init()
    url = server.url("bridge_test")
    upgrade(url)
    try:
        yield url
    finally:
        janitor.drop()


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "env": "dev",
        "sandbox": False,
        "admin_token": TEST_ADMIN_TOKEN,
        "axp_callback_token": TEST_CALLBACK_TOKEN,
        "secret_key": TEST_SECRET_KEY,
        "worker_enabled": False,
        "log_format": "console",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


async def truncate_all(engine: AsyncEngine) -> None:
    tables = [table.name for table in reversed(metadata.sorted_tables)]
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(database_url))
    await truncate_all(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
def backend(database_url: str) -> str:
    return "postgresql" if database_url.startswith("postgresql") else "sqlite"


@pytest.fixture
def postgres_planner(backend: str) -> None:
    """For the plan tests (`pytestmark = pytest.mark.usefixtures("postgres_planner")`)."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's planner")


@pytest.fixture
def sent_statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Any]]]:
    """Every statement the bulk helpers hand to asyncpg during the test, with its arguments."""
    return record_sent_statements(monkeypatch)


class InProcessClient(httpx.AsyncClient):
    """A test's client to the app in this process: never routed through respx, which mocks
    the upstreams the app calls, not the test's own calls to the app."""

    def _transport_for_url(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        return self._transport


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[BridgeApp, httpx.AsyncClient]]:
    """The real app with its lifespan running, and an in-process HTTP client to it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with InProcessClient(transport=transport, base_url="http://bridge.test") as client:
            yield app, client


@pytest.fixture
async def app_client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to the app on an emptied database (both backends)."""
    async with running_app(settings) as (_app, client):
        yield client
