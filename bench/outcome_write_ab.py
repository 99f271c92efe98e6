"""The relay's per-send bookkeeping, row by row (executemany) against one `unnest` statement.

    .venv/bin/python bench/outcome_write_ab.py            # batches of 16 and 64, 3 rounds

After each send, the outcome transaction records the conversation's activity (AXP's ids, last
activity) and the message link's remote id and status (`ConversationActivity`, `LinkSent`,
mappings/bookkeeping.py). On PostgreSQL these were an executemany through SQLAlchemy, one
execution per sent message; they are now one `UPDATE ... FROM unnest(...)` per batch on the
asyncpg connection (mappings/repository.py). Both ways write the same rows to the same
tables (`--rows` conversations and links, analyzed, as a running bridge's are), alternating
within each round, one transaction per batch. Reported: client CPU per row (this process)
and PostgreSQL CPU per row (this benchmark's cluster only).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throwaway_db import (  # noqa: E402
    add_batch_options,
    cpu_per_item,
    print_medians,
    throwaway_database,
)
from channel_bridge.mappings import repository  # noqa: E402
from channel_bridge.mappings.bookkeeping import CONVERSATION_ACTIVITY, LINK_SENT  # noqa: E402

Rows = tuple[list[dict[str, Any]], list[dict[str, Any]]]

# The tables a running bridge has: conversations and their links, one delivery each. Foreign
# keys are not checked while filling (session_replication_role): only the updates are measured.
_FILL = [
    "SET session_replication_role = replica",
    "INSERT INTO conversations (id, channel_id, customer_address, generation, provider_dialog_id,"
    " state, last_activity_at, created_at) SELECT g, 1, 'c' || g, 1, 'p' || g, 'open', now(),"
    " now() FROM generate_series(1, :rows) AS g",
    "INSERT INTO message_links (direction, conversation_id, ack_id, delivery_id, status,"
    " created_at) SELECT 'nexus_to_axp', g, 'ack-' || g, g, 'pending', now()"
    " FROM generate_series(1, :rows) AS g",
]


async def _executemany(session: AsyncSession, rows: Rows) -> None:
    """The previous way: SQLAlchemy's executemany of the per-row statements."""
    activity, sent = rows
    await session.execute(
        repository._RECORD_ACTIVITY,
        [
            {
                "b_conversation_id": r["conversation_id"],
                "b_engagement_id": r["engagement_id"],
                "b_dialog_id": r["dialog_id"],
                "b_at": r["at"],
            }
            for r in sorted(activity, key=lambda r: r["conversation_id"])
        ],
    )
    await session.execute(
        repository._MARK_SENT,
        [
            {
                "b_delivery_id": r["delivery_id"],
                "b_axp_message_id": r["axp_message_id"],
                "b_nexus_message_id": None,
                "b_at": r["at"],
            }
            for r in sorted(sent, key=lambda r: r["delivery_id"])
        ],
    )


async def _unnest(session: AsyncSession, rows: Rows) -> None:
    """The bridge's writers as the relay worker applies them."""
    activity, sent = rows
    await CONVERSATION_ACTIVITY.write(session, activity)
    await LINK_SENT.write(session, sent)


def _rows(ids: list[int], tag: str) -> Rows:
    now = datetime.now(UTC)
    activity = [
        {"conversation_id": i, "engagement_id": f"eng-{i}", "dialog_id": f"dlg-{i}", "at": now}
        for i in ids
    ]
    sent = [{"delivery_id": i, "axp_message_id": f"axp-{tag}-{i}", "at": now} for i in ids]
    return activity, sent


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_batch_options(parser, items=4096, item="write")
    parser.add_argument("--rows", type=int, default=20_000, help="conversations and links")
    args = parser.parse_args()
    ways: dict[str, Callable[[AsyncSession, Rows], Awaitable[None]]] = {
        "executemany": _executemany,
        "unnest": _unnest,
    }
    figures: dict[tuple[int, str], list[tuple[float, float]]] = {}
    async with throwaway_database() as db:
        async with db.engine.begin() as connection:
            for statement in _FILL:
                await connection.execute(text(statement), {"rows": args.rows})
        async with db.engine.connect() as connection:
            await connection.execute(text("COMMIT"))
            await connection.execute(text("ANALYZE conversations"))
            await connection.execute(text("ANALYZE message_links"))
        random.seed(17)
        for size in args.sizes:
            for round_ in range(args.rounds):
                for way, write in ways.items():
                    batches = [
                        _rows(random.sample(range(1, args.rows + 1), size), f"{round_}-{i}")
                        for i in range(max(2, args.writes // size))
                    ]

                    async def run(rows: Rows, write: Any = write) -> None:
                        async with db.sessionmaker() as session, session.begin():
                            await write(session, rows)

                    figures.setdefault((size, way), []).append(
                        await cpu_per_item(db, run, batches, size)
                    )
    print_medians(figures, ("batch", "way"), "client CPU µs/row", "PostgreSQL CPU µs/row")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
