"""The deliveries queued behind a head that waits for its retry wait with it, and are let go
with it.

A head sent back to wait raises the next_attempt_at of the rows behind it in its partition to
its own, so claims no longer meet them in the due range while nothing of that partition can be
claimed (performance.md, eleventh round). What must still hold: order within the partition,
other partitions untouched, the next row claimable the moment its head is done, and a head let
go early (replayed, cancelled, its circuit closed) letting go of the rows behind it.
"""

from __future__ import annotations

from datetime import timedelta

from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.errors import RetryableError
from channel_bridge.relay.repository import DeliveryRepository, OutcomeRow, make_pending_due
from channel_bridge.relay.service import cancel_delivery, replay_delivery
from tests.relay.conftest import load_delivery
from tests.relay.conftest import queue_in_partition as _queue


def _fail_partition(sink, partition: str) -> None:
    sink.script = lambda ctx: (
        RetryableError("down", http_status=503) if ctx.partition_key == partition else None
    )


async def _accept_one(inbox, name: str, destination: str, partition: str) -> list[int]:
    """One event, one delivery to `destination` in `partition`; its id."""
    acceptance = await inbox.accept(
        source="test",
        external_id=name,
        payload={},
        deliveries=[DeliveryRequest(destination, {"name": name}, partition)],
    )
    return acceptance.delivery_ids


async def _behind_a_waiting_head(inbox, worker, sink, clock, count: int) -> list[int]:
    """`count` deliveries of partition "stuck", its head failed once and still waiting."""
    _fail_partition(sink, "stuck")
    stuck = await _queue(inbox, "stuck", count)
    await worker.run_once()
    clock.advance(0.5)  # the retry is still ahead
    return stuck


async def _times(sessionmaker, ids: list[int]) -> list:
    return [(await load_delivery(sessionmaker, i)).next_attempt_at for i in ids]


async def test_rows_behind_a_head_sent_back_to_wait_take_its_retry_time(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    _fail_partition(sink, "stuck")
    stuck = await _queue(inbox, "stuck", 4)
    other = await _queue(inbox, "other", 2)
    arrived = clock.now()

    assert await worker.run_once() == 2  # both heads; "stuck"'s fails

    head = await load_delivery(sessionmaker, stuck[0])
    assert head.status == "pending"
    retry_at = head.next_attempt_at
    assert retry_at > arrived
    assert await _times(sessionmaker, stuck[1:]) == [retry_at] * 3
    # The other partition keeps its own times (its head was delivered, the rest are due).
    assert (await load_delivery(sessionmaker, other[0])).status == "delivered"
    assert (await load_delivery(sessionmaker, other[1])).next_attempt_at == arrived


async def test_the_partition_stays_in_order_and_moves_on_the_moment_its_head_is_done(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    _fail_partition(sink, "stuck")
    stuck = await _queue(inbox, "stuck", 3)
    await worker.run_once()
    retry_at = (await load_delivery(sessionmaker, stuck[0])).next_attempt_at

    assert await worker.run_once() == 0  # nothing of "stuck" before its head's retry
    sink.script = None
    clock.set(retry_at)
    # Head, then each next one at once: no row behind waits beyond its head.
    for expected in (0, 1, 2):
        assert await worker.run_once() == 1
        assert sink.calls[-1].payload["n"] == expected
    assert [c.payload["n"] for c in sink.calls] == [0, 0, 1, 2]


async def test_a_row_arriving_behind_a_waiting_head_takes_the_wait_at_the_next_retry(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    _fail_partition(sink, "stuck")
    (head,) = await _queue(inbox, "stuck", 1)
    await worker.run_once()
    first_retry = (await load_delivery(sessionmaker, head)).next_attempt_at

    clock.advance(0.25)
    late = await _accept_one(inbox, "late", "test.sink", "stuck")
    arrived = clock.now()
    assert await _times(sessionmaker, late) == [arrived]  # the insert is not made dearer

    clock.set(first_retry)
    assert await worker.run_once() == 1  # the head fails again, later retry
    second_retry = (await load_delivery(sessionmaker, head)).next_attempt_at
    assert second_retry > first_retry
    assert await _times(sessionmaker, late) == [second_retry]


async def test_a_replayed_head_lets_the_rows_behind_it_go(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    stuck = await _behind_a_waiting_head(inbox, worker, sink, clock, 3)

    async with sessionmaker() as session, session.begin():
        await replay_delivery(session, stuck[0], now=clock.now())

    assert await _times(sessionmaker, stuck) == [clock.now()] * 3
    sink.script = None
    assert [await worker.run_once() for _ in range(3)] == [1, 1, 1]
    assert [c.payload["n"] for c in sink.calls] == [0, 0, 1, 2]


async def test_a_cancelled_waiting_head_lets_the_rows_behind_it_go(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    stuck = await _behind_a_waiting_head(inbox, worker, sink, clock, 3)

    async with sessionmaker() as session, session.begin():
        await cancel_delivery(session, stuck[0], now=clock.now())

    assert (await load_delivery(sessionmaker, stuck[0])).status == "cancelled"
    assert await _times(sessionmaker, stuck[1:]) == [clock.now()] * 2
    sink.script = None
    assert await worker.run_once() == 1
    assert sink.calls[-1].payload["n"] == 1


async def test_an_attempted_row_behind_keeps_its_own_retry_time_when_the_head_is_let_go(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    # A row behind that was attempted before (here: a head that failed, then an earlier one
    # of its partition was replayed in front of it) waits for its own retry, not for now.
    _fail_partition(sink, "stuck")
    first, second = await _queue(inbox, "stuck", 2)
    sink.script = None
    await worker.run_once()  # first delivered
    _fail_partition(sink, "stuck")
    await worker.run_once()  # second fails: waits for its retry
    own_retry = (await load_delivery(sessionmaker, second)).next_attempt_at
    async with sessionmaker() as session, session.begin():
        await replay_delivery(session, first, force=True, now=clock.now())
    assert await _times(sessionmaker, [second]) == [own_retry]


async def test_a_closing_circuit_lets_every_row_behind_go(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    stuck = await _behind_a_waiting_head(inbox, worker, sink, clock, 3)

    async with sessionmaker() as session, session.begin():
        await make_pending_due(session, destinations=["test.sink"], now=clock.now())

    assert await _times(sessionmaker, stuck) == [clock.now()] * 3


async def test_an_outcome_whose_lease_was_lost_moves_nothing_behind(
    inbox, sessionmaker, clock
) -> None:
    stuck = await _queue(inbox, "stuck", 2)
    now = clock.now()
    async with sessionmaker() as session, session.begin():
        repository = DeliveryRepository(session)
        (claimed,) = await repository.claim_due(
            destinations=["test.sink"], limit=8, now=now, lease_s=30, worker_id="w-old"
        )
    # The lease expired and another worker holds the delivery now.
    later = now + timedelta(seconds=31)
    async with sessionmaker() as session, session.begin():
        (again,) = await DeliveryRepository(session).claim_due(
            destinations=["test.sink"], limit=8, now=later, lease_s=30, worker_id="w-new"
        )
    assert again.id == claimed.id == stuck[0]

    async with sessionmaker() as session, session.begin():
        stored = await DeliveryRepository(session).record_outcomes(
            [
                OutcomeRow(
                    delivery_id=claimed.id,
                    attempt_number=1,
                    status="pending",
                    now=later,
                    next_attempt_at=later + timedelta(minutes=5),
                )
            ],
            worker_id="w-old",
        )
    assert stored == set()
    assert await _times(sessionmaker, [stuck[1]]) == [now]


async def test_a_closing_circuit_lets_go_of_rows_behind_that_go_to_no_circuit(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    # A conversation's own bookkeeping (here "test.bookkeeping", no circuit) queued behind its
    # head: the circuit of the head's destination closes, and both are due at once.
    _fail_partition(sink, "stuck")
    (head,) = await _queue(inbox, "stuck", 1)
    bookkeeping = await _accept_one(inbox, "bookkeeping", "test.bookkeeping", "stuck")
    unrelated = await _accept_one(inbox, "unrelated", "test.bookkeeping", "elsewhere")
    await worker.run_once()
    retry_at = (await load_delivery(sessionmaker, head)).next_attempt_at
    assert await _times(sessionmaker, bookkeeping) == [retry_at]
    clock.advance(0.5)
    async with sessionmaker() as session, session.begin():
        await DeliveryRepository(session).set_status(
            unrelated[0], status="pending", now=clock.now(), next_attempt_at=retry_at
        )

    async with sessionmaker() as session, session.begin():
        made_due = await make_pending_due(session, destinations=["test.sink"], now=clock.now())

    assert made_due == 2
    assert await _times(sessionmaker, [head, *bookkeeping]) == [clock.now()] * 2
    # A row of another circuit in a partition with nothing of this one keeps its time.
    assert await _times(sessionmaker, unrelated) == [retry_at]
