# ruff: noqa: E501  (markdown table rows read better on one line)
"""The group commit's write, four ways (not a test): what one accepted webhook costs to store.

    .venv/bin/python bench/inbox_write_bench.py            # batches of 16, 64, 256; 3 rounds
    .venv/bin/python bench/inbox_write_bench.py --quick    # one round

Each way writes the same batches to a throwaway PostgreSQL 15 (tests/support, fsync off): one
transaction per batch inserting N inbox events (`ON CONFLICT DO NOTHING RETURNING`, as the
dedupe needs the new ids) and one delivery per event (`RETURNING id`), with realistic bodies
(the Nexus message `bench/bridge_bench.py` sends, as payload and raw body):

- **bridge**: the bridge's own code path (SQLAlchemy AsyncSession, `InboxBatchWriter`,
  `DeliveryRepository.insert_rows`: one `unnest` statement per table);
- **asyncpg unnest**: the same two statements on a raw asyncpg connection (no session, no
  greenlet, no SQLAlchemy compilation);
- **asyncpg COPY**: `copy_records_to_table` into temporary tables, then `INSERT … SELECT`
  from them (COPY cannot do `ON CONFLICT` or `RETURNING` itself);
- **asyncpg executemany**: one prepared single-row `INSERT` per event, pipelined by asyncpg;
  it cannot return the new ids, so it writes the events only (no deliveries): a floor, not
  a way the inbox could work.

Reported per event: client CPU (this process's utime + stime) and PostgreSQL CPU (its
processes' utime + stime from /proc), medians over the rounds; ways and batch sizes
interleave within a round so a noisy minute hits all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bridge_bench import nexus_post  # noqa: E402
from bench.throwaway_db import cpu_per_item, throwaway_database  # noqa: E402
from channel_bridge.relay.repository import (  # noqa: E402
    DeliveryRepository,
    InboxBatchWriter,
    next_sequence,
)

EVENT_COLUMNS = (
    "source",
    "external_id",
    "kind",
    "payload",
    "raw_body",
    "ack",
    "received_at",
    "status",
)
DELIVERY_COLUMNS = (
    "inbox_event_id",
    "destination",
    "partition_key",
    "sequence",
    "payload",
    "status",
    "attempt_count",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "skipped",
)
UNNEST_EVENTS = (
    "INSERT INTO inbox_events (source, external_id, kind, payload, raw_body, ack, received_at, status) "
    "SELECT source, external_id, kind, CAST(payload AS jsonb), raw_body, CAST(ack AS jsonb), received_at, status "
    "FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::varchar[]) "
    "AS batch(source, external_id, kind, payload, raw_body, ack, received_at, status) "
    "ON CONFLICT (source, external_id) DO NOTHING RETURNING id, source, external_id"
)
UNNEST_DELIVERIES = (
    "INSERT INTO deliveries (inbox_event_id, destination, partition_key, sequence, payload, status, attempt_count, next_attempt_at, created_at, updated_at, skipped) "
    "SELECT inbox_event_id, destination, partition_key, sequence, CAST(payload AS jsonb), status, attempt_count, next_attempt_at, created_at, updated_at, skipped "
    "FROM unnest($1::bigint[], $2::varchar[], $3::varchar[], $4::bigint[], $5::text[], $6::varchar[], $7::int[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::bool[]) "
    "AS batch(inbox_event_id, destination, partition_key, sequence, payload, status, attempt_count, next_attempt_at, created_at, updated_at, skipped) "
    "RETURNING id, sequence"
)


def _batch(size: int, run: str) -> tuple[list[dict[str, Any]], list[str]]:
    now = datetime.now(UTC)
    events = []
    for n in range(size):
        post = nexus_post(run, n)
        message = json.loads(post.body)
        events.append(
            {
                "source": "nexus.webhook",
                "external_id": f"bench:{run}:{n}",
                "kind": "message",
                "payload": {"message": message, "channelId": "+16504661149", "ackId": f"nx-{n}"},
                "raw_body": post.body.decode(),
                "ack": {"messageId": f"nx-{run}-{n}"},
                "received_at": now,
                "status": "received",
            }
        )
    return events, [json.dumps(event["payload"]) for event in events]


def _delivery(event_id: int, now: datetime) -> dict[str, Any]:
    return {
        "inbox_event_id": event_id,
        "destination": "axp.send_message",
        "partition_key": f"conv:{event_id % 200}",
        "sequence": next_sequence(),
        "payload": {"text": "hello", "ackId": f"nx-{event_id}"},
        "status": "pending",
        "attempt_count": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "skipped": False,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", default=[16, 64, 256])
    parser.add_argument("--events", type=int, default=6144, help="events per way, size and round")
    args = parser.parse_args()
    rounds = 1 if args.quick else 3

    async with throwaway_database() as db:
        sessionmaker = db.sessionmaker
        raw = await db.raw_connection()

        async def bridge_way(events: list[dict[str, Any]], _json: list[str]) -> None:
            async with sessionmaker() as session, session.begin():
                writer = InboxBatchWriter(await session.connection())
                ids = await writer.insert_events(events)
                now = datetime.now(UTC)
                await DeliveryRepository(session).insert_rows(
                    [_delivery(i, now) for i in ids.values()]
                )

        async def unnest_way(events: list[dict[str, Any]], payloads: list[str]) -> None:
            async with raw.transaction():
                rows = await raw.fetch(
                    UNNEST_EVENTS,
                    [e["source"] for e in events],
                    [e["external_id"] for e in events],
                    [e["kind"] for e in events],
                    payloads,
                    [e["raw_body"] for e in events],
                    [json.dumps(e["ack"]) for e in events],
                    [e["received_at"] for e in events],
                    [e["status"] for e in events],
                )
                now = datetime.now(UTC)
                deliveries = [_delivery(row["id"], now) for row in rows]
                await raw.fetch(
                    UNNEST_DELIVERIES,
                    *(
                        [d[c] if c != "payload" else json.dumps(d[c]) for d in deliveries]
                        for c in DELIVERY_COLUMNS
                    ),
                )

        async def copy_way(events: list[dict[str, Any]], payloads: list[str]) -> None:
            async with raw.transaction():
                await raw.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS batch_events (LIKE inbox_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                await raw.copy_records_to_table(
                    "batch_events",
                    records=[
                        (
                            e["source"],
                            e["external_id"],
                            e["kind"],
                            p,
                            e["raw_body"],
                            json.dumps(e["ack"]),
                            e["received_at"],
                            e["status"],
                        )
                        for e, p in zip(events, payloads, strict=True)
                    ],
                    columns=list(EVENT_COLUMNS),
                )
                rows = await raw.fetch(
                    f"INSERT INTO inbox_events ({', '.join(EVENT_COLUMNS)}) SELECT {', '.join(EVENT_COLUMNS)} "
                    "FROM batch_events ON CONFLICT (source, external_id) DO NOTHING RETURNING id"
                )
                await raw.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS batch_deliveries (LIKE deliveries INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                now = datetime.now(UTC)
                await raw.copy_records_to_table(
                    "batch_deliveries",
                    records=[
                        tuple(
                            json.dumps(v) if c == "payload" else v
                            for c, v in _delivery(r["id"], now).items()
                        )
                        for r in rows
                    ],
                    columns=list(DELIVERY_COLUMNS),
                )
                await raw.fetch(
                    f"INSERT INTO deliveries ({', '.join(DELIVERY_COLUMNS)}) SELECT {', '.join(DELIVERY_COLUMNS)} "
                    "FROM batch_deliveries RETURNING id"
                )

        single_event = (
            f"INSERT INTO inbox_events ({', '.join(EVENT_COLUMNS)}) VALUES ($1, $2, $3, $4::jsonb, $5, $6::jsonb, $7, $8) "
            "ON CONFLICT (source, external_id) DO NOTHING"
        )

        async def executemany_way(events: list[dict[str, Any]], payloads: list[str]) -> None:
            async with raw.transaction():
                await raw.executemany(
                    single_event,
                    [
                        (
                            e["source"],
                            e["external_id"],
                            e["kind"],
                            p,
                            e["raw_body"],
                            json.dumps(e["ack"]),
                            e["received_at"],
                            e["status"],
                        )
                        for e, p in zip(events, payloads, strict=True)
                    ],
                )

        ways: dict[str, Callable[[list[dict[str, Any]], list[str]], Awaitable[None]]] = {
            "bridge (SQLAlchemy session, unnest)": bridge_way,
            "asyncpg unnest": unnest_way,
            "asyncpg COPY + INSERT SELECT": copy_way,
            "asyncpg executemany (events only, no RETURNING: a floor)": executemany_way,
        }
        results: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
        for round_number in range(rounds):
            for size in args.sizes:
                for name, way in ways.items():
                    batches = [
                        _batch(size, f"r{round_number}s{size}{abs(hash(name)) % 997}b{b}")
                        for b in range(max(1, args.events // size))
                    ]

                    async def write(
                        batch: tuple[list[dict[str, Any]], list[str]], way: Any = way
                    ) -> None:
                        await way(*batch)

                    results[(name, size)].append(await cpu_per_item(db, write, batches, size))
        await raw.close()

    print("| way | batch | client CPU µs/event | PostgreSQL CPU µs/event | total |")
    print("|---|---|---|---|---|")
    for (name, size), figures in results.items():
        client = statistics.median(f[0] for f in figures)
        pg = statistics.median(f[1] for f in figures)
        print(f"| {name} | {size} | {client:.0f} | {pg:.0f} | {client + pg:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
