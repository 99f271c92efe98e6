"""What a transaction costs the client before any row: the session, BEGIN, COMMIT, a round trip.

    .venv/bin/python bench/transaction_cost.py           # 2,000 transactions per way, 2 rounds

One idle loop (uvloop, as `serve` runs) against a throwaway PostgreSQL 15 (tests/support),
each way in turn:

- `session, 0 statements`: the bridge's sessionmaker, `session.begin()`, nothing run (no
  BEGIN is sent: SQLAlchemy's asyncpg adapter begins lazily);
- `session, 1 statement` / `2 statements`: as the group commit and the relay run theirs,
  `SELECT 1` through `db.bulk.fetch_text` on the driver inside the session's transaction;
- `asyncpg, 1 statement` / `2 statements`: the same on a bare asyncpg connection in
  `connection.transaction()`;
- `asyncpg, autocommit`: one statement, no transaction around it.

Reported: client CPU and wall time per transaction. The machine is a nested VM: a round trip to
another process costs far more CPU here than on bare metal, so compare the ways, not machines.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throwaway_db import print_medians, throwaway_database  # noqa: E402
from channel_bridge.db.bulk import fetch_text  # noqa: E402

_SELECT = text("SELECT 1 AS x")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    async with throwaway_database() as db:
        bare = await db.raw_connection()

        def session_way(statements: int) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                async with db.sessionmaker() as session, session.begin():
                    for _ in range(statements):
                        await fetch_text(session, _SELECT, {})

            return run

        def asyncpg_way(statements: int) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                async with bare.transaction():
                    for _ in range(statements):
                        await bare.fetch("SELECT 1 AS x")

            return run

        async def autocommit() -> None:
            await bare.fetch("SELECT 1 AS x")

        ways: dict[str, Callable[[], Awaitable[None]]] = {
            "session, 0 statements": session_way(0),
            "session, 1 statement": session_way(1),
            "session, 2 statements": session_way(2),
            "asyncpg, 1 statement": asyncpg_way(1),
            "asyncpg, 2 statements": asyncpg_way(2),
            "asyncpg, autocommit": autocommit,
        }
        figures: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
        for _round in range(args.rounds):
            for way, run in ways.items():
                for _ in range(50):  # pool filled, statements prepared
                    await run()
                cpu0, wall0 = time.process_time(), time.perf_counter()
                for _ in range(args.transactions):
                    await run()
                figures[way].append(
                    (
                        (time.process_time() - cpu0) / args.transactions * 1e6,
                        (time.perf_counter() - wall0) / args.transactions * 1e6,
                    )
                )
        await bare.close()
    print_medians(figures, ("way",), "client CPU µs per transaction", "wall µs")
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
