"""kill -9 under load: SIGKILL the bridge mid-stream, restart it, lose and double nothing.

Guarantee checked: at-least-once on the wire (a send in flight when the process died is sent
again after its lease expires, with the same providerMessageId and correlationId), exactly
once as seen by the AXP simulator's dedupe (`sim.messages`).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx

from tests.drills.harness import (
    SCALE,
    BridgeProcess,
    Outcome,
    count_rows,
    delivered_ids,
    new_run,
    nexus_signer,
    order_violations,
    post_webhook,
    scaled,
    send_conversations,
    settled_statuses,
    wait_until,
    webhook,
    wire_sends,
)


async def test_sigkill_under_load_loses_and_doubles_nothing(
    seeded_database, axp, bridges, tmp_path, side
) -> None:
    sim, upstream = axp
    # A killed process's leases come back after 3 s here (production keeps 60 s).
    bridge = BridgeProcess(
        seeded_database, upstream.url, tmp_path, overrides={"BRIDGE_WORKER_LEASE_S": "3"}
    )
    bridges.append(bridge)
    await bridge.start()
    nexus, run = side, new_run()
    conversations, per_conversation = 20, scaled(25)
    total = conversations * per_conversation
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
    # Kill somewhere between a fifth and three fifths of the way through the load.
    kill_at = random.randint(total // 5, 3 * total // 5)
    assert await wait_until(lambda: len(outcome.results) >= kill_at or sender.done(), 120, 0.005)
    bridge.kill()
    await sender  # the rest fail fast: connection refused
    killed_at = len(outcome.acknowledged())
    dropped = len(outcome.dropped()) + (total - len(outcome.results))
    assert 0 < killed_at < total, outcome.statuses()

    await bridge.start()
    # Nexus redelivers what it got no 2xx for; do the same for the dropped ones.
    async with httpx.AsyncClient(timeout=10.0) as client:
        for mid, body, headers in (
            webhook(nexus, run, c, s) for c in range(conversations) for s in range(per_conversation)
        ):
            if mid not in outcome.acknowledged():
                outcome.results[mid] = await post_webhook(
                    client, bridge.url, body, headers, side.path
                )
    acknowledged = outcome.acknowledged()
    assert acknowledged == set(outcome.results), outcome.statuses()

    assert await wait_until(lambda: acknowledged <= set(delivered_ids(sim)), 120 * SCALE), (
        f"{len(acknowledged - set(delivered_ids(sim)))} acknowledged webhooks never delivered"
    )
    await asyncio.sleep(1.0)
    counts = Counter(delivered_ids(sim))
    assert {mid for mid, n in counts.items() if n != 1} == set()
    assert set(counts) == acknowledged
    # None was claimed delivered that AXP did not accept; every row finished.
    rows = await settled_statuses(seeded_database, total)
    assert rows == {"delivered": total}
    sends = wire_sends(sim)
    resent = sum(n - 1 for n in sends.values() if n > 1)
    print(
        f"kill -9 drill: {total} webhooks, killed after {killed_at} acks, "
        f"{dropped} redelivered by the client, {resent} re-sent on the wire"
    )
    # A re-send carries the same providerMessageId and correlationId (the delivery's
    # idempotency key): that is what lets AXP's dedupe make it exactly once.
    keys: dict[str, set[str]] = {}
    for request in sim.recorded(method="POST", path_contains="/messages"):
        body = request.json
        keys.setdefault(body["providerMessageId"], set()).add(body["correlationId"])
    assert {mid for mid, ids in keys.items() if len(ids) != 1} == set()
    # Within a conversation the order survives the crash (the partition head blocks the rest).
    assert order_violations(sim) == []


async def test_webhook_refused_with_an_error_is_never_delivered(
    seeded_database, axp, bridges, tmp_path
) -> None:
    """A badly signed webhook gets 401 and is never stored or delivered, killed or not."""
    sim, upstream = axp
    bridge = BridgeProcess(seeded_database, upstream.url, tmp_path)
    bridges.append(bridge)
    await bridge.start()
    nexus, run = nexus_signer(), new_run()
    async with httpx.AsyncClient(timeout=10.0) as client:
        mid, body, headers = webhook(nexus, run, 0, 0)
        headers = {**headers, "X-Hub-Signature": "sha256=" + "0" * 64}
        assert await post_webhook(client, bridge.url, body, headers) == 401
        bridge.kill()
        await bridge.start()
        good_mid, good_body, good_headers = webhook(nexus, run, 0, 1)
        assert await post_webhook(client, bridge.url, good_body, good_headers) == 200
    assert await wait_until(lambda: good_mid in delivered_ids(sim), 30)
    assert mid not in delivered_ids(sim)
    rows = await count_rows(seeded_database, "SELECT external_id FROM inbox_events")
    assert len(rows) == 1 and mid not in rows[0][0]
