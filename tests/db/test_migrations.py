"""Migrations are reversible: upgrade head, downgrade base, upgrade head again."""

from __future__ import annotations

from sqlalchemy import inspect

from channel_bridge.db.base import metadata
from channel_bridge.db.engine import create_engine
from channel_bridge.db.migrate import downgrade, upgrade
from tests.conftest import make_settings
from tests.support.postgres import PostgresServer


async def _tables(url: str) -> set[str]:
    engine = create_engine(make_settings(url))
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return names - {"alembic_version"}


async def test_upgrade_downgrade_upgrade_on_postgres(postgres_server: PostgresServer) -> None:
    janitor = postgres_server.janitor("bridge_migrations")
    janitor.init()
    try:
        url = postgres_server.url("bridge_migrations")
        upgrade(url)
        assert await _tables(url) == set(metadata.tables)
        downgrade(url, "base")
        assert await _tables(url) == set()
        upgrade(url)
        assert await _tables(url) == set(metadata.tables)
    finally:
        janitor.drop()


async def test_upgrade_downgrade_on_sqlite(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert await _tables(url) == set(metadata.tables)
    downgrade(url, "base")
    assert await _tables(url) == set()
