"""The group commit's NOTIFY as a statement of its own against riding on the delivery insert.

    .venv/bin/python bench/notify_fold_ab.py            # batches of 16 and 64, 3 rounds

Each way writes the same group-commit batches to a throwaway PostgreSQL 15 (bench/throwaway_db.py):
N inbox events and one delivery each in one transaction, as `Inbox` does, and wakes workers in
other processes with a NOTIFY:

- **separate statement** (before): the delivery insert, then `SELECT pg_notify(...)`, one more
  round trip per batch;
- **folded** (now): `DeliveryRepository.insert_rows`, whose insert NOTIFYs in the same statement.

A listener on the channel counts the notifications: both ways must deliver one per batch.
Reported: client CPU and PostgreSQL CPU per event, wall time per batch (the round trip saved is
latency first: every acknowledgement of the batch waits for it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inbox_write_bench import _batch, _delivery  # noqa: E402
from bench.throwaway_db import (  # noqa: E402
    add_batch_options,
    cpu_per_item,
    throwaway_database,
)
from channel_bridge.db.bulk import fetch_text, insert_rows  # noqa: E402
from channel_bridge.relay.repository import (  # noqa: E402
    NOTIFY_CHANNEL,
    DeliveryRepository,
    InboxBatchWriter,
)
from channel_bridge.relay.repository.tables import delivery_table  # noqa: E402

_NOTIFY = text("SELECT pg_notify(:channel, '')")

Events = list[dict[str, Any]]


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_batch_options(parser, items=2048, item="event")
    args = parser.parse_args()
    figures: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    async with throwaway_database() as db:
        heard = 0

        def count(*_args: Any) -> None:
            nonlocal heard
            heard += 1

        listener = await db.raw_connection()
        await listener.add_listener(NOTIFY_CHANNEL, count)

        async def separate(events: Events) -> None:
            async with db.sessionmaker() as session, session.begin():
                ids = await InboxBatchWriter(await session.connection()).insert_events(events)
                now = datetime.now(UTC)
                await insert_rows(
                    session,
                    delivery_table,
                    [_delivery(i, now) for i in ids.values()],
                    returning=("id", "sequence"),
                )
                await fetch_text(session, _NOTIFY, {"channel": NOTIFY_CHANNEL})

        async def folded(events: Events) -> None:
            async with db.sessionmaker() as session, session.begin():
                ids = await InboxBatchWriter(await session.connection()).insert_events(events)
                now = datetime.now(UTC)
                await DeliveryRepository(session).insert_rows(
                    [_delivery(i, now) for i in ids.values()]
                )

        ways: dict[str, Callable[[Events], Awaitable[None]]] = {
            "separate statement": separate,
            "folded": folded,
        }
        for size in args.sizes:
            for round_ in range(args.rounds):
                for way, write in ways.items():
                    batches = [
                        _batch(size, f"{way}-{size}-{round_}-{i}")[0]
                        for i in range(max(2, args.events // size))
                    ]
                    heard_before, started = heard, time.perf_counter()
                    client, pg = await cpu_per_item(db, write, batches, size)
                    wall_ms = (time.perf_counter() - started) / len(batches) * 1000
                    await asyncio.sleep(0.2)  # the last notifications arrive
                    notified = heard - heard_before
                    if notified != len(batches):
                        raise SystemExit(f"{way}: {notified} notifications, {len(batches)} batches")
                    figures.setdefault((size, way), []).append((client, pg, wall_ms))
        await listener.close()
    print(
        "| batch | way | client CPU µs/event (per round) | median | PostgreSQL CPU µs/event "
        "| wall ms per batch |"
    )
    print("|---|---|---|---|---|---|")
    for (size, way), rounds in figures.items():
        print(
            f"| {size} | {way} | {', '.join(f'{c:.0f}' for c, _, _ in rounds)} | "
            f"**{statistics.median(c for c, _, _ in rounds):.0f}** | "
            f"{statistics.median(p for _, p, _ in rounds):.0f} | "
            f"{statistics.median(w for _, _, w in rounds):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
