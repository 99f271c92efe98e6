"""The claim reads the outbox's open and dead rows, never its delivered history (PostgreSQL).

Finished deliveries stay in the table for `retention_attempts_days` (90 by default): millions
of rows on a busy tenant, and nearly none of them dead. The claim's last step flags the dead
deliveries that a claimed later one passes over; with statistics that count no dead row, the
planner found a scan of the whole table the cheapest way to find them, on every claim, even
one that claimed nothing (17 ms a claim at 100,000 delivered rows). The test puts the
statistics in that state and has PostgreSQL EXPLAIN ANALYZE the very statement and
parameters the driver was given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from channel_bridge.db.models import Delivery
from channel_bridge.relay.repository import DeliveryRepository
from tests.support.plans import record_sent_statements, rows_thrown_away

T0 = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
DELIVERED = 3_000
PARTITIONS = 30


@pytest.fixture(autouse=True)
def _postgres_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's planner")


@pytest.fixture
def sent_statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Any]]]:
    return record_sent_statements(monkeypatch)


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
