"""Async engine and session factory for PostgreSQL (asyncpg) or the embedded SQLite default."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from channel_bridge import jsondoc
from channel_bridge.settings import DEFAULT_SQLITE_URL, ConfigError, Settings


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    # No pool_pre_ping: it cost a round trip per checkout on the webhook path; a connection
    # that died is discarded by the pool on its first error, and that request answers 503.
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:":
            _sqlite_directory(database)
        kwargs = {"connect_args": {"timeout": 30}}
    else:
        kwargs.update(
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_connect_timeout_s,
            connect_args={"timeout": settings.db_connect_timeout_s},
        )
    engine = create_async_engine(
        url, json_serializer=jsondoc.dumps, json_deserializer=jsondoc.loads, **kwargs
    )
    if url.get_backend_name() == "sqlite":
        _tune_sqlite(engine)
    return engine


def _sqlite_directory(database: str) -> None:
    """Only the default ./var is created: any other missing directory is a typo to report,
    not a tree to make (as root, even /nonexistent/dir would be created)."""
    parent = Path(database).parent
    if parent.is_dir():
        return
    if database != make_url(DEFAULT_SQLITE_URL).database:
        raise ConfigError(
            f"BRIDGE_DATABASE_URL names a SQLite file in {parent}, which does not exist: "
            f"create the directory (mkdir -p {parent}) or fix the path"
        )
    parent.mkdir()


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the one writer; busy_timeout waits instead of failing.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block ends, rolls back when it raises.

    The commit rule of the routes (`deps.get_session`) and of the CLI commands; services only
    flush. The exceptions keep their own transactions and say so: the inbox's group commit
    (`relay/inbox.py`) and the worker's claim and outcome transactions (`relay/worker.py`).
    """
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Call `callback` once, after the session's current transaction commits."""
    event.listen(session.sync_session, "after_commit", lambda _session: callback(), once=True)
