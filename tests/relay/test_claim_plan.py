"""The claim reads what it claims and little else, whatever the statistics say (PostgreSQL).

Two ways it did not, each with statistics that no longer describe the table:
- Finished deliveries stay for `retention_attempts_days` (90 by default): millions of rows on a
  busy tenant, nearly none of them dead. The claim's last step flags the dead deliveries a
  claimed later one passes over; with statistics that count no dead row, the planner scanned
  the whole table for them on every claim, even one that claimed nothing (17 ms a claim at
  100,000 delivered rows).
- The head-of-line test (is anything earlier open in this candidate's partition?), written as
  NOT EXISTS, became an anti-join; with statistics of a new install and a burst queued, it read
  the whole open outbox for every candidate (95,580 rows, 30-60 ms a claim).
Each test puts the statistics in such a state and has PostgreSQL EXPLAIN ANALYZE the very
statement and parameters the driver was given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from channel_bridge.db.models import Delivery
from channel_bridge.relay.repository import DeliveryRepository
from tests.support.plans import rows_thrown_away

T0 = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
DELIVERED = 3_000
PARTITIONS = 30
PENDING = 400
IN_FLIGHT = 40


pytestmark = pytest.mark.usefixtures("postgres_planner")


def _row(n: int, partition: int, status: str) -> dict[str, Any]:
    return {
        "destination": "test.sink",
        "partition_key": f"conv-{partition}",
        "sequence": n,
        "payload": {"n": n},
        "status": status,
        "attempt_count": 1 if status != "pending" else 0,
        "next_attempt_at": T0 - timedelta(minutes=1),
        "skipped": False,
        "created_at": T0,
        "updated_at": T0,
    }


async def test_a_claim_reads_no_delivered_row(sessionmaker, sent_statements) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            insert(Delivery), [_row(n, n % PARTITIONS, "delivered") for n in range(DELIVERED)]
        )
        # Statistics of a healthy outbox: everything delivered, nothing dead.
        await session.execute(text("ANALYZE deliveries"))
        dead = _row(DELIVERED, 0, "dead")
        await session.execute(insert(Delivery), [dead, _row(DELIVERED + 1, 0, "pending")])

    async with sessionmaker() as session:
        async with session.begin():
            claimed = await DeliveryRepository(session).claim_due(
                destinations=["test.sink"], limit=16, now=T0, lease_s=30, worker_id="w1"
            )
            assert [c.payload["n"] for c in claimed] == [DELIVERED + 1]
            statement, args = sent_statements[-1]
            await session.rollback()
        # The claim again, on the same rows, under EXPLAIN ANALYZE (and rolled back too).
        async with session.begin():
            assert await rows_thrown_away(session, statement, args) < 10
            await session.rollback()

    # What the step is for still happens: the dead delivery the claim passed over is flagged.
    async with sessionmaker() as session, session.begin():
        await DeliveryRepository(session).claim_due(
            destinations=["test.sink"], limit=16, now=T0, lease_s=30, worker_id="w1"
        )
    async with sessionmaker() as session:
        flagged = await session.scalars(select(Delivery.skipped).where(Delivery.status == "dead"))
        assert list(flagged) == [True]


async def test_a_claim_tests_each_candidate_against_its_own_partition_only(
    sessionmaker, sent_statements
) -> None:
    async with sessionmaker() as session, session.begin():
        # Statistics of a new install: a handful of deliveries. Then a burst arrives: 40
        # conversations have a message in flight and more queued behind it, 40 only queued.
        await session.execute(insert(Delivery), [_row(n, n, "delivered") for n in range(5)])
        await session.execute(text("ANALYZE deliveries"))
        in_flight = [
            {**_row(100 + n, n, "in_flight"), "locked_until": T0 + timedelta(minutes=5)}
            for n in range(IN_FLIGHT)
        ]
        queued = [_row(1_000 + n, n % (2 * IN_FLIGHT), "pending") for n in range(PENDING)]
        await session.execute(insert(Delivery), in_flight + queued)

    async with sessionmaker() as session:
        async with session.begin():
            claimed = await DeliveryRepository(session).claim_due(
                destinations=["test.sink"], limit=64, now=T0, lease_s=30, worker_id="w1"
            )
            # The first queued message of each conversation with nothing in flight.
            assert sorted(c.payload["n"] for c in claimed) == [
                1_000 + n for n in range(IN_FLIGHT, 2 * IN_FLIGHT)
            ]
            statement, args = sent_statements[-1]
            await session.rollback()
        async with session.begin():
            # The open outbox read a few times over at most (95,580 rows when every candidate
            # was tested against all of it).
            assert await rows_thrown_away(session, statement, args) < 3 * (IN_FLIGHT + PENDING)
            await session.rollback()
