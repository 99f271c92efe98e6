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
from channel_bridge.relay.repository import DeliveryRepository, OutcomeRow
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


async def test_a_claim_meets_no_row_queued_behind_a_head_waiting_for_its_retry(
    sessionmaker, sent_statements
) -> None:
    # A whole upstream failing conversation by conversation: every partition's head has failed
    # and waits for its retry, the rest of each partition is queued behind it, due by its
    # arrival time. The heads are sent back through the real outcome write.
    waiting = 50
    behind = 40
    async with sessionmaker() as session, session.begin():
        # Retention keeps delivered rows: the table is many times the outbox.
        await session.execute(
            insert(Delivery), [_row(-n, n % waiting, "delivered") for n in range(1, DELIVERED)]
        )
        await session.execute(
            insert(Delivery),
            [_row(n, n % waiting, "pending") for n in range(waiting * (behind + 1))],
        )
        await session.execute(text("ANALYZE deliveries"))
    async with sessionmaker() as session, session.begin():
        repository = DeliveryRepository(session)
        heads = await repository.claim_due(
            destinations=["test.sink"], limit=waiting, now=T0, lease_s=30, worker_id="w1"
        )
        assert sorted(h.payload["n"] for h in heads) == list(range(waiting))
        retry_at = T0 + timedelta(seconds=30)
        outcomes = [
            OutcomeRow(
                delivery_id=h.id,
                attempt_number=1,
                status="pending",
                now=T0,
                next_attempt_at=retry_at,
            )
            for h in heads
        ]
        assert await repository.record_outcomes(outcomes, worker_id="w1") == {h.id for h in heads}
        outcome_statement, outcome_args = sent_statements[-1]
        await session.rollback()
    # The same outcome write under EXPLAIN ANALYZE: each head's queue found by its partition.
    async with sessionmaker() as session, session.begin():
        await DeliveryRepository(session).claim_due(
            destinations=["test.sink"], limit=waiting, now=T0, lease_s=30, worker_id="w1"
        )
        assert await rows_thrown_away(session, outcome_statement, outcome_args) < waiting
        await session.commit()

    async with sessionmaker() as session:
        async with session.begin():
            claimed = await DeliveryRepository(session).claim_due(
                destinations=["test.sink"],
                limit=16,
                now=T0 + timedelta(seconds=1),
                lease_s=30,
                worker_id="w1",
            )
            assert claimed == []
            statement, args = sent_statements[-1]
            await session.rollback()
        async with session.begin():
            # 2,000 when the queued rows stayed due: each tested against its waiting head.
            assert await rows_thrown_away(session, statement, args) < 10
            await session.rollback()
        async with session.begin():
            # At the retry time, the heads again, one per partition.
            claimed = await DeliveryRepository(session).claim_due(
                destinations=["test.sink"],
                limit=waiting * 2,
                now=retry_at,
                lease_s=30,
                worker_id="w1",
            )
            assert sorted(c.payload["n"] for c in claimed) == list(range(waiting))
            await session.rollback()
