"""Planner statistics that keep up with a young or fast-growing table (PostgreSQL).

asyncpg prepares every statement, and after a few executions PostgreSQL keeps one generic
plan for it, costed with the table sizes the statistics gave at that moment. Autovacuum
refreshes the statistics once a table has changed by 10 % and 50 rows, but it looks only
once a minute (`autovacuum_naptime`). Until then a fresh database, or an outbox that grew by
thousands of rows in a burst, runs on plans made for an empty table: the relay's claim read
every open delivery per candidate (1.8-2.5 ms a claim at a 5,000-row backlog), the
conversation lookup and the sent-message check scanned their whole tables once per batch.
An ANALYZE replaces the statistics and invalidates those plans on every connection.

So a table is analyzed here once the rows changed since its last ANALYZE reach the number
it had then (the planner's estimate is off by half or more), and at least `min_changes`. A
table that keeps growing is analyzed each time it doubles, a handful of times in its life;
a large one is left to autovacuum, whose 10 % comes first. Several replicas may run this:
one advisory lock per round lets a single one do it. SQLite has no planner statistics to
go stale in this way (it plans each statement as it is prepared): nothing is done there.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.base import metadata
from channel_bridge.db.bulk import is_postgres

# pg_try_advisory_xact_lock's key: one replica analyzes per round (any fixed 64-bit value).
ANALYZE_LOCK_KEY = 0x6272_6964_6765_0001

_STALE = text(
    """
    SELECT s.relname AS name
    FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
    WHERE s.schemaname = current_schema()
      AND s.relname = ANY(CAST(:names AS text[]))
      AND s.n_mod_since_analyze >= GREATEST(:min_changes, c.reltuples)
      -- Only a table's owner may ANALYZE it (PostgreSQL 15 skips the others with a warning).
      AND pg_has_role(c.relowner, 'USAGE')
    ORDER BY s.relname
    """
)


def bridge_tables() -> list[str]:
    """The tables of the bridge's own schema (the models' metadata)."""
    return sorted(metadata.tables)


async def stale_tables(
    session: AsyncSession, names: Collection[str], *, min_changes: int
) -> list[str]:
    """Those of `names` whose statistics a refresh would change by half or more."""
    rows = await session.execute(_STALE, {"names": list(names), "min_changes": min_changes})
    return list(rows.scalars())


async def analyze_stale_tables(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    min_changes: int,
    names: Collection[str] | None = None,
) -> list[str]:
    """ANALYZE the stale ones of the bridge's tables; the tables analyzed."""
    async with sessionmaker() as session:
        if not is_postgres(session):
            return []
        async with session.begin():
            locked = await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ANALYZE_LOCK_KEY}
            )
            if not locked:  # another replica is at it this round
                return []
            stale = await stale_tables(
                session, bridge_tables() if names is None else names, min_changes=min_changes
            )
            # ANALYZE waits for autovacuum's lock on the table: not for long, the next round
            # tries again.
            await session.execute(text("SET LOCAL lock_timeout = '2s'"))
            preparer = session.get_bind().dialect.identifier_preparer
            for name in stale:
                # The names are our own tables' (metadata), quoted all the same.
                await session.execute(text(f"ANALYZE {preparer.quote(name)}"))
        return stale
