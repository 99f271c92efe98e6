"""The group commit's write through the bridge's own code, with and without the driver path.

    .venv/bin/python bench/inbox_driver_ab.py            # batches of 16 and 64, 3 rounds

Same batches as `bench/inbox_write_bench.py` (N inbox events with `ON CONFLICT DO NOTHING
RETURNING`, one delivery each, one transaction per batch), written by `InboxBatchWriter` and
`DeliveryRepository.insert_rows` in a SQLAlchemy session: once with db/bulk.py running the
statements on the asyncpg connection (the default), once with that path switched off, so
SQLAlchemy executes them. The two alternate within each round. Reported: client CPU per
event (this process) and PostgreSQL CPU per event (this benchmark's cluster only).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inbox_write_bench import _batch, _delivery  # noqa: E402
from bench.throwaway_db import (  # noqa: E402
    add_batch_options,
    cpu_per_item,
    print_medians,
    throwaway_database,
)
from channel_bridge.db import bulk  # noqa: E402
from channel_bridge.relay.repository import DeliveryRepository, InboxBatchWriter  # noqa: E402


async def _sqlalchemy_only(_bind: Any) -> None:
    return None


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_batch_options(parser, items=2048, item="event")
    args = parser.parse_args()
    driver_path = bulk._driver
    figures: dict[tuple[int, str], list[tuple[float, float]]] = {}
    try:
        async with throwaway_database() as db:

            async def write(events: list[dict[str, Any]]) -> None:
                async with db.sessionmaker() as session, session.begin():
                    ids = await InboxBatchWriter(await session.connection()).insert_events(events)
                    now = datetime.now(UTC)
                    await DeliveryRepository(session).insert_rows(
                        [_delivery(i, now) for i in ids.values()]
                    )

            for size in args.sizes:
                for round_ in range(args.rounds):
                    for way, driver in (("SQLAlchemy", _sqlalchemy_only), ("driver", driver_path)):
                        bulk._driver = driver  # type: ignore[assignment]
                        batches = [
                            _batch(size, f"{way}-{size}-{round_}-{i}")[0]
                            for i in range(max(2, args.events // size))
                        ]
                        figures.setdefault((size, way), []).append(
                            await cpu_per_item(db, write, batches, size)
                        )
    finally:
        bulk._driver = driver_path  # type: ignore[assignment]
    print_medians(figures, ("batch", "way"), "client CPU µs/event", "PostgreSQL CPU µs/event")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
