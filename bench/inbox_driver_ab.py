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
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.postgres import destroy, start_postgres  # noqa: E402

from bench.ack_ab import tree_cpu  # noqa: E402
from bench.inbox_write_bench import _batch, _delivery  # noqa: E402
from channel_bridge.db import bulk  # noqa: E402
from channel_bridge.db.engine import create_engine, create_sessionmaker  # noqa: E402
from channel_bridge.db.migrate import upgrade  # noqa: E402
from channel_bridge.relay.repository import DeliveryRepository, InboxBatchWriter  # noqa: E402
from channel_bridge.settings import Settings  # noqa: E402


async def _sqlalchemy_only(_bind: Any) -> None:
    return None


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=2048, help="events per way, size and round")
    args = parser.parse_args()
    server = start_postgres()
    driver_path = bulk._driver
    try:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        server.janitor(name).init()
        url = server.url(name)
        upgrade(url)
        postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])
        engine = create_engine(Settings(database_url=url, env="dev"))
        sessionmaker = create_sessionmaker(engine)

        async def write(events: list[dict[str, Any]]) -> None:
            async with sessionmaker() as session, session.begin():
                ids = await InboxBatchWriter(await session.connection()).insert_events(events)
                now = datetime.now(UTC)
                await DeliveryRepository(session).insert_rows(
                    [_delivery(i, now) for i in ids.values()]
                )

        figures: dict[tuple[int, str], list[tuple[float, float]]] = {}
        for size in args.sizes:
            for round_ in range(args.rounds):
                for way, driver in (("SQLAlchemy", _sqlalchemy_only), ("driver", driver_path)):
                    bulk._driver = driver  # type: ignore[assignment]
                    batches = [
                        _batch(size, f"{way}-{size}-{round_}-{i}")[0]
                        for i in range(max(2, args.events // size))
                    ]
                    await write(batches[0])  # statements prepared on this connection
                    cpu0, pg0 = time.process_time(), tree_cpu(postmaster)
                    for batch in batches[1:]:
                        await write(batch)
                    n = (len(batches) - 1) * size
                    figures.setdefault((size, way), []).append(
                        (
                            (time.process_time() - cpu0) / n * 1e6,
                            (tree_cpu(postmaster) - pg0) / n * 1e6,
                        )
                    )
        await engine.dispose()
    finally:
        bulk._driver = driver_path  # type: ignore[assignment]
        destroy(server)
    print("| batch | way | client CPU µs/event (per round) | median | PostgreSQL CPU µs/event |")
    print("|---|---|---|---|---|")
    for (size, way), rows in figures.items():
        print(
            f"| {size} | {way} | {', '.join(f'{c:.0f}' for c, _ in rows)} | "
            f"**{statistics.median(c for c, _ in rows):.0f}** | "
            f"{statistics.median(p for _, p in rows):.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
