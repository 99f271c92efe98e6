"""What the database benches share: a throwaway PostgreSQL 15 holding the bridge's schema, the
loop that measures a way of writing, and the table of medians they print.

    async with throwaway_database() as db:
        figures[(size, way)].append(await cpu_per_item(db, write, batches, size))
    print_medians(figures, ("batch", "way"), "event")

The cluster is tests/support's (fsync off, started as the `postgres` user when run as root)
and is destroyed on the way out, whatever happened.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.postgres import PostgresServer, destroy, start_postgres

from bench.ack_ab import tree_cpu
from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.db.migrate import upgrade
from channel_bridge.settings import Settings

Batch = TypeVar("Batch")


@dataclass(frozen=True)
class ThrowawayDatabase:
    server: PostgresServer
    name: str
    url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    postmaster: int

    def pg_cpu(self) -> float:
        """CPU seconds of this cluster so far: the postmaster and its backends."""
        return tree_cpu(self.postmaster)

    async def raw_connection(self) -> Any:
        """A bare asyncpg connection to the database, outside the bridge's engine."""
        import asyncpg

        return await asyncpg.connect(self.server.url(self.name, driver="postgresql"))


@asynccontextmanager
async def throwaway_database() -> AsyncIterator[ThrowawayDatabase]:
    """A fresh cluster and database at the head migration, with the bridge's engine on it."""
    server = start_postgres()
    try:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        server.janitor(name).init()
        url = server.url(name)
        upgrade(url)
        postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])
        engine = create_engine(Settings(database_url=url, env="dev"))
        try:
            yield ThrowawayDatabase(
                server, name, url, engine, create_sessionmaker(engine), postmaster
            )
        finally:
            await engine.dispose()
    finally:
        destroy(server)


def add_batch_options(parser: argparse.ArgumentParser, *, items: int, item: str) -> None:
    """--sizes, --rounds and --ITEMS (how many per way, size and round) for a batch bench."""
    parser.add_argument("--sizes", type=int, nargs="*", default=[16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        f"--{item}s", type=int, default=items, help=f"{item}s per way, size and round"
    )


async def cpu_per_item(
    db: ThrowawayDatabase,
    write: Callable[[Batch], Awaitable[None]],
    batches: Sequence[Batch],
    items_per_batch: int,
) -> tuple[float, float]:
    """Client and PostgreSQL CPU µs per item writing `batches[1:]`.

    The first batch is written unmeasured: it prepares the statements on the connection.
    """
    await write(batches[0])
    client_0, pg_0 = time.process_time(), db.pg_cpu()
    for batch in batches[1:]:
        await write(batch)
    items = (len(batches) - 1) * items_per_batch
    return (time.process_time() - client_0) / items * 1e6, (db.pg_cpu() - pg_0) / items * 1e6


def print_medians(
    figures: Mapping[Any, Sequence[tuple[float, float]]],
    keys: Sequence[str],
    first: str,
    second: str,
) -> None:
    """One row per key: the first figure per round and its median, the second's median.

    `figures` maps a key (a tuple of `len(keys)` parts, or one part) to (first, second) per
    round; `first` and `second` head their columns, e.g. "client CPU µs/event".
    """
    print(f"| {' | '.join(keys)} | {first} (per round) | median | {second} |")
    print("|" + "---|" * (len(keys) + 3))
    for key, rounds in figures.items():
        parts = key if isinstance(key, tuple) else (key,)
        print(
            f"| {' | '.join(str(part) for part in parts)} | "
            f"{', '.join(f'{a:.0f}' for a, _ in rounds)} | "
            f"**{statistics.median(a for a, _ in rounds):.0f}** | "
            f"{statistics.median(b for _, b in rounds):.0f} |"
        )
