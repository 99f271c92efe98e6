"""Planner statistics refreshed as the bridge's tables grow (db/statistics.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, make_url, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from channel_bridge.db.statistics import (
    ANALYZE_LOCK_KEY,
    analyze_stale_tables,
    bridge_tables,
    stale_tables,
)
from channel_bridge.relay.maintenance import Housekeeping
from channel_bridge.relay.repository.tables import inbox_table
from tests.conftest import make_settings


async def _insert_events(sessionmaker, count: int, *, prefix: str = "e") -> None:
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            insert(inbox_table),
            [
                {
                    "source": "test",
                    "external_id": f"{prefix}{n}",
                    "status": "received",
                    "received_at": now,
                }
                for n in range(count)
            ],
        )
        if session.get_bind().dialect.name == "postgresql":
            # The backend reports its row counts when it is next idle; now, not in a second.
            await session.execute(text("SELECT pg_stat_force_next_flush()"))


async def _wait_stale(sessionmaker, table: str, *, min_changes: int) -> None:
    for _ in range(50):
        async with sessionmaker() as session:
            if table in await stale_tables(session, [table], min_changes=min_changes):
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{table} never reported stale")


async def _estimate(sessionmaker, table: str) -> tuple[float, int]:
    """The planner's row count of `table`, and how many times it was analyzed by hand."""
    async with sessionmaker() as session:
        row = (
            await session.execute(
                text(
                    "SELECT c.reltuples, s.analyze_count FROM pg_class AS c"
                    " JOIN pg_stat_user_tables AS s ON s.relid = c.oid WHERE c.relname = :name"
                ),
                {"name": table},
            )
        ).one()
    return float(row.reltuples), int(row.analyze_count)


def test_bridge_tables_are_the_models_tables() -> None:
    tables = bridge_tables()
    assert {"inbox_events", "deliveries", "conversations", "message_links"} <= set(tables)
    assert "alembic_version" not in tables


async def test_a_grown_table_is_analyzed_once_until_it_doubles(sessionmaker, backend) -> None:
    if backend != "postgresql":
        await _insert_events(sessionmaker, 1500)
        # SQLite plans each statement when it is prepared: nothing to refresh, no error.
        assert await analyze_stale_tables(sessionmaker, min_changes=1000) == []
        return
    await _insert_events(sessionmaker, 1500)
    await _wait_stale(sessionmaker, "inbox_events", min_changes=1000)
    analyses = (await _estimate(sessionmaker, "inbox_events"))[1]

    analyzed = await analyze_stale_tables(sessionmaker, min_changes=1000)

    assert "inbox_events" in analyzed
    assert await _estimate(sessionmaker, "inbox_events") == (1500, analyses + 1)
    # Fresh statistics: 1,500 rows known, so 600 more changes are not enough to redo them.
    await _insert_events(sessionmaker, 600, prefix="more")
    async with sessionmaker() as session:
        assert await stale_tables(session, ["inbox_events"], min_changes=100) == []
    assert "inbox_events" not in await analyze_stale_tables(sessionmaker, min_changes=100)
    assert await _estimate(sessionmaker, "inbox_events") == (1500, analyses + 1)


async def test_changes_under_the_minimum_are_left_to_autovacuum(sessionmaker, backend) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL planner statistics")
    await _insert_events(sessionmaker, 1500)
    await _wait_stale(sessionmaker, "inbox_events", min_changes=1000)
    before = await _estimate(sessionmaker, "inbox_events")

    assert await analyze_stale_tables(sessionmaker, min_changes=10**9) == []
    assert await _estimate(sessionmaker, "inbox_events") == before


async def test_one_replica_analyzes_per_round(sessionmaker, engine, backend) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL planner statistics")
    await _insert_events(sessionmaker, 1500)
    await _wait_stale(sessionmaker, "inbox_events", min_changes=1000)
    before = await _estimate(sessionmaker, "inbox_events")
    async with engine.connect() as other_replica:
        await other_replica.execute(
            text("SELECT pg_advisory_lock(:key)"), {"key": ANALYZE_LOCK_KEY}
        )
        assert await analyze_stale_tables(sessionmaker, min_changes=1000) == []
        assert await _estimate(sessionmaker, "inbox_events") == before
        await other_replica.execute(
            text("SELECT pg_advisory_unlock(:key)"), {"key": ANALYZE_LOCK_KEY}
        )
    assert "inbox_events" in await analyze_stale_tables(sessionmaker, min_changes=1000)


@pytest.mark.parametrize(("interval", "running"), [(2.0, True), (0.0, False)])
async def test_housekeeping_runs_the_upkeep_unless_turned_off(
    sessionmaker, database_url, interval, running
) -> None:
    settings = make_settings(database_url, db_analyze_interval_s=interval)
    housekeeping = Housekeeping(sessionmaker, settings)
    await housekeeping.start()
    try:
        names = {task.get_name() for task in housekeeping._tasks}
        assert ("db-statistics" in names) is running
        assert {"relay-retention", "relay-gauges"} <= names
    finally:
        await housekeeping.stop()


async def test_a_table_the_role_does_not_own_is_left_alone(
    sessionmaker, engine, database_url, backend
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL planner statistics")
    await _insert_events(sessionmaker, 1500)
    await _wait_stale(sessionmaker, "inbox_events", min_changes=1000)
    async with engine.begin() as connection:
        await connection.execute(text("DROP ROLE IF EXISTS bridge_reader"))
        await connection.execute(text("CREATE ROLE bridge_reader LOGIN"))
        await connection.execute(
            text("GRANT SELECT ON ALL TABLES IN SCHEMA public TO bridge_reader")
        )
    url = make_url(database_url).set(username="bridge_reader")
    reader = create_async_engine(url)
    try:
        # PostgreSQL would skip its ANALYZE with a warning, round after round.
        assert await analyze_stale_tables(async_sessionmaker(reader), min_changes=1000) == []
    finally:
        await reader.dispose()
        async with engine.begin() as connection:
            await connection.execute(
                text("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM bridge_reader")
            )
            await connection.execute(text("DROP ROLE bridge_reader"))
    assert "inbox_events" in await analyze_stale_tables(sessionmaker, min_changes=1000)
