"""Two replicas: two `serve` processes on one PostgreSQL, the client alternating between them.

Successive messages of one conversation land on different replicas, and both relay workers
claim from the same outbox: still no duplicate delivery and no reordering in a conversation.
"""

from __future__ import annotations

from collections import Counter

from tests.drills.harness import (
    SCALE,
    BridgeProcess,
    Outcome,
    count_rows,
    delivered_ids,
    new_run,
    nexus_signer,
    order_violations,
    scaled,
    send_conversations,
    settled_statuses,
    wait_until,
    wire_sends,
)


async def test_two_replicas_deliver_once_in_order(seeded_database, axp, bridges, tmp_path) -> None:
    sim, upstream = axp
    first = BridgeProcess(seeded_database, upstream.url, tmp_path)
    second = BridgeProcess(seeded_database, upstream.url, tmp_path)
    bridges.extend((first, second))
    await first.start()
    await second.start()
    nexus, run = nexus_signer(), new_run()
    conversations, per_conversation = scaled(20), scaled(10)
    outcome = Outcome()
    await send_conversations(
        [first.url, second.url],
        run=run,
        conversations=conversations,
        per_conversation=per_conversation,
        redeliveries=3,
        outcome=outcome,
        nexus=nexus,
    )
    total = conversations * per_conversation
    assert outcome.statuses() == Counter({200: total})

    acknowledged = outcome.acknowledged()
    assert await wait_until(lambda: acknowledged <= set(delivered_ids(sim)), 120 * SCALE)
    assert Counter(delivered_ids(sim)) == Counter(acknowledged)
    # No duplicate even on the wire: a lease is never held by two replicas at once.
    sends = wire_sends(sim)
    failed = await count_rows(
        seeded_database,
        "SELECT number, worker_id, error FROM attempts WHERE outcome != 'delivered'",
    )
    assert {mid: n for mid, n in sends.items() if n != 1} == {}, failed[:3]
    assert order_violations(sim) == []
    # Both replicas did relay work (the outbox is shared, not partitioned by process).
    workers = await count_rows(seeded_database, "SELECT DISTINCT worker_id FROM attempts")
    assert len(workers) == 2, workers
    rows = await settled_statuses(seeded_database, total)
    assert rows == {"delivered": total}
