"""Upstream outage: AXP answers 503 for a while, then recovers; all delivered, in order.

Time-compressed: the bridge runs with a retry schedule of 0.05, 0.1, 0.2, 0.4, then 0.5 s
(jitter off) instead of 5 s .. 8 h, and the outage lasts seconds instead of minutes. The
circuit breaker opens during it (tests/drills/test_sustained_faults.py measures that side).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

from tests.drills.harness import (
    SCALE,
    BridgeProcess,
    Outcome,
    count_rows,
    delivered_ids,
    new_run,
    order_violations,
    scaled,
    send_conversations,
    settled_statuses,
    wait_until,
)

SCHEDULE = [0.05, 0.1, 0.2, 0.4] + [0.5] * 16


async def test_axp_outage_then_recovery_delivers_everything_in_order(
    seeded_database, axp, bridges, tmp_path, side
) -> None:
    sim, upstream = axp
    bridge = BridgeProcess(
        seeded_database,
        upstream.url,
        tmp_path,
        overrides={
            "BRIDGE_RETRY_SCHEDULE_S": str(SCHEDULE),
            "BRIDGE_RETRY_JITTER": "0",
        },
    )
    bridges.append(bridge)
    await bridge.start()
    nexus, run = side, new_run()
    conversations, per_conversation = 10, scaled(10)
    outage_s = min(2.0 * SCALE, 6.0)

    sim.faults.error_status = 503
    sim.faults.error_rate = 1.0
    outcome = Outcome()
    sender = asyncio.create_task(
        send_conversations(
            [bridge.url],
            run=run,
            conversations=conversations,
            per_conversation=per_conversation,
            outcome=outcome,
            nexus=nexus,
        )
    )
    await asyncio.sleep(outage_s)
    failed_during_outage = len(sim.recorded(method="POST", path_contains="/messages"))
    sim.faults.error_rate = 0.0
    await sender
    # The webhooks never depended on AXP being up.
    assert outcome.statuses() == Counter({200: conversations * per_conversation})
    acknowledged = outcome.acknowledged()
    assert failed_during_outage > 0
    assert sim.messages == [] or set(delivered_ids(sim)) <= acknowledged

    assert await wait_until(lambda: acknowledged <= set(delivered_ids(sim)), 60 * SCALE)
    assert Counter(delivered_ids(sim)) == Counter(acknowledged)
    assert order_violations(sim) == []
    # While the head of a conversation was failing, nothing behind it was sent past it.
    rows = await settled_statuses(seeded_database, len(acknowledged))
    assert rows == {"delivered": len(acknowledged)}

    # Attempts follow the schedule: after a counted failure numbered n, the next try waited at
    # least SCHEDULE[n-1]. A probe the open circuit let through that failed again is recorded
    # but does not use the delivery's budget, so the next attempt repeats its number.
    attempts = await count_rows(
        seeded_database,
        (
            "SELECT delivery_id, number, started_at, outcome"
            " FROM attempts ORDER BY delivery_id, started_at"
        ),
    )
    by_delivery: dict[int, list[tuple[int, object, str]]] = {}
    for delivery_id, number, started_at, result in attempts:
        by_delivery.setdefault(delivery_id, []).append((number, started_at, result))
    retried = {d: a for d, a in by_delivery.items() if len(a) > 1}
    assert retried, "the outage should have made some deliveries retry"
    for delivery_id, tries in retried.items():
        numbers = [n for n, _, _ in tries]
        assert numbers[0] == 1, delivery_id
        assert all(b - a in (0, 1) for a, b in itertools.pairwise(numbers)), (delivery_id, numbers)
        assert tries[-1][2] == "delivered" and all(r != "delivered" for _, _, r in tries[:-1])
        for (number, started, _), (next_number, next_started, _) in itertools.pairwise(tries):
            if next_number == number:
                continue  # an uncounted probe: the circuit's probe interval applied, not SCHEDULE
            waited = (next_started - started).total_seconds()  # type: ignore[operator]
            # Lower bound only (a busy machine may be later, never earlier); 10 ms clock slack.
            assert waited >= SCHEDULE[number - 1] - 0.01, (delivery_id, number, waited)
