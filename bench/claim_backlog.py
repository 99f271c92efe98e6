"""The claim while every conversation's head waits for its retry, the rest queued behind it.

    .venv/bin/python bench/claim_backlog.py                       # this tree
    .venv/bin/python bench/claim_backlog.py --src /tmp/base/src   # another tree's relay

A throwaway PostgreSQL holds `--delivered` finished deliveries (retention keeps them) and
`--queued` pending ones over `--partitions` conversations, all due. Every head is claimed and
sent back to wait `--retry-s` through the tree's own `DeliveryRepository.record_outcomes`, in
batches of 64 as the worker does (timed: that write is where this tree raises the rows behind
each head). Then, with nothing claimable, claims are timed (each rolled back) three ways: with
the statistics of before the outage, after an ANALYZE, and after `--arrivals` more deliveries
arrive behind the waiting heads. Last, at the retry time, one claim must return exactly one
head per conversation, the oldest, whichever tree it is.

Timing is wall time of the statement from this process (median of `--claims`); the machine is
shared, so compare trees in one session, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _paths(src: str | None) -> None:
    sys.path.insert(0, str(ROOT))
    if src:
        sys.path.insert(0, str(Path(src).resolve()))


T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
DESTINATION = "bench.sink"

_FILL = """
    INSERT INTO deliveries (destination, partition_key, sequence, payload, status,
        attempt_count, next_attempt_at, skipped, created_at, updated_at)
    SELECT $1, 'conv-' || (g % $2), g + $3, '{"n": 0}'::jsonb, $4, 0, $5, false, $5, $5
    FROM generate_series(1, $6) AS g
"""


async def _fill(db, *, status: str, offset: int, rows: int, partitions: int, at: datetime) -> None:
    connection = await db.raw_connection()
    try:
        await connection.execute(_FILL, DESTINATION, partitions, offset, status, at, rows)
    finally:
        await connection.close()


async def _analyze(db) -> None:
    connection = await db.raw_connection()
    try:
        await connection.execute("ANALYZE deliveries")
    finally:
        await connection.close()


async def _timed_claims(db, repository_type, *, now: datetime, claims: int) -> float:
    """Median ms of a claim at `now`, each rolled back; asserts it claims nothing."""
    times = []
    for _ in range(claims + 1):
        async with db.sessionmaker() as session, session.begin():
            started = time.perf_counter()
            claimed = await repository_type(session).claim_due(
                destinations=[DESTINATION], limit=64, now=now, lease_s=30, worker_id="bench"
            )
            times.append((time.perf_counter() - started) * 1e3)
            assert claimed == [], f"{len(claimed)} claimed while every head waits"
            await session.rollback()
    return statistics.median(times[1:])  # the first prepares the statement


async def run(args: argparse.Namespace) -> dict[str, float]:
    from bench.throwaway_db import throwaway_database
    from channel_bridge.relay.repository import DeliveryRepository, OutcomeRow

    figures: dict[str, float] = {}
    async with throwaway_database() as db:
        arrived = T0 - timedelta(minutes=1)
        await _fill(
            db,
            status="delivered",
            offset=-args.delivered,
            rows=args.delivered,
            partitions=args.partitions,
            at=arrived,
        )
        await _fill(
            db,
            status="pending",
            offset=0,
            rows=args.queued,
            partitions=args.partitions,
            at=arrived,
        )
        await _analyze(db)

        retry_at = T0 + timedelta(seconds=args.retry_s)
        writes, heads = [], 0
        while True:
            async with db.sessionmaker() as session, session.begin():
                repository = DeliveryRepository(session)
                claimed = await repository.claim_due(
                    destinations=[DESTINATION], limit=64, now=T0, lease_s=30, worker_id="bench"
                )
                if not claimed:
                    break
                outcomes = [
                    OutcomeRow(
                        delivery_id=c.id,
                        attempt_number=1,
                        status="pending",
                        now=T0,
                        next_attempt_at=retry_at,
                        last_error="503",
                    )
                    for c in claimed
                ]
                started = time.perf_counter()
                await repository.record_outcomes(outcomes, worker_id="bench")
                writes.append((time.perf_counter() - started) * 1e3)
                heads += len(claimed)
        assert heads == args.partitions, f"{heads} heads sent back, {args.partitions} expected"
        figures["outcome write, per batch of 64 heads"] = statistics.median(writes)

        waiting = T0 + timedelta(seconds=1)
        figures["claim, statistics of before"] = await _timed_claims(
            db, DeliveryRepository, now=waiting, claims=args.claims
        )
        await _analyze(db)
        figures["claim, after ANALYZE"] = await _timed_claims(
            db, DeliveryRepository, now=waiting, claims=args.claims
        )
        await _fill(
            db,
            status="pending",
            offset=args.queued,
            rows=args.arrivals,
            partitions=args.partitions,
            at=T0,
        )
        figures[f"claim, {args.arrivals} arrived since"] = await _timed_claims(
            db, DeliveryRepository, now=waiting, claims=args.claims
        )

        async with db.sessionmaker() as session, session.begin():
            claimed = await DeliveryRepository(session).claim_due(
                destinations=[DESTINATION],
                limit=2 * args.partitions,
                now=retry_at,
                lease_s=30,
                worker_id="bench",
            )
            oldest = sorted(c.id for c in claimed)
            assert len(claimed) == args.partitions, f"{len(claimed)} heads at the retry time"
            assert oldest[-1] - oldest[0] == args.partitions - 1, "not each conversation's oldest"
            await session.rollback()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", help="a tree's src/ whose channel_bridge is measured")
    parser.add_argument("--queued", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--delivered", type=int, default=20_000)
    parser.add_argument("--arrivals", type=int, default=1_000)
    parser.add_argument("--retry-s", type=float, default=60.0)
    parser.add_argument("--claims", type=int, default=15)
    args = parser.parse_args()
    _paths(args.src)
    import channel_bridge

    figures = asyncio.run(run(args))
    print(
        f"channel_bridge from {Path(channel_bridge.__file__).parent}; {args.queued} queued over "
        f"{args.partitions} conversations, {args.delivered} delivered"
    )
    print("\n| what | wall ms, median |\n|---|---|")
    for name, value in figures.items():
        print(f"| {name} | {value:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
