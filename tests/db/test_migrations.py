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


async def _index_names(url: str) -> dict[str, set[str]]:
    engine = create_engine(make_settings(url))
    async with engine.connect() as connection:
        names = await connection.run_sync(
            lambda sync: {
                # PostgreSQL also lists the indexes behind unique constraints: not model indexes.
                table: {
                    index["name"]
                    for index in inspect(sync).get_indexes(table)
                    if not index.get("duplicates_constraint")
                }
                for table in metadata.tables
            }
        )
    await engine.dispose()
    return names


def _model_index_names() -> dict[str, set[str]]:
    return {
        name: {index.name for index in table.indexes} for name, table in metadata.tables.items()
    }


async def test_migrated_indexes_match_the_models(database_url: str, engine) -> None:
    # The session database was built by the migrations: every model index exists, no other.
    indexes = await _index_names(database_url)
    assert indexes == _model_index_names()
    assert "ix_deliveries_open_partition" in indexes["deliveries"]


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
