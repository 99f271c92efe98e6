"""One relay write transaction at a time per SQLite engine."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_sqlite_write_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def write_turn(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> contextlib.AbstractAsyncContextManager[Any]:
    """On SQLite, one relay write transaction at a time per engine; elsewhere nothing.

    SQLite has one writer. Connections that find it busy sleep in the busy handler (in steps
    up to 100 ms), so letting the inbox and every delivery race for it wastes most of the
    time; queueing them in-process hands the lock over without sleeping.
    """
    engine = sessionmaker.kw["bind"]
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    lock = _sqlite_write_locks.get(engine.sync_engine)
    if lock is None:
        lock = _sqlite_write_locks[engine.sync_engine] = asyncio.Lock()
    return lock
