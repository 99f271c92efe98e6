"""Duplicate storm: every webhook posted 3x at once -> one inbox row and one AXP message each."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.drills.harness import (
    SCALE,
    BridgeProcess,
    count_rows,
    delivered_ids,
    new_run,
    scaled,
    settled_statuses,
    wait_until,
    webhook,
    wire_sends,
)


async def test_each_webhook_sent_three_times_concurrently_is_delivered_once(
    seeded_database, axp, bridges, tmp_path, side
) -> None:
    sim, upstream = axp
    bridge = BridgeProcess(seeded_database, upstream.url, tmp_path)
    bridges.append(bridge)
    await bridge.start()
    run = new_run()
    messages = [webhook(side, run, conversation, 0) for conversation in range(scaled(100))]

    answers: dict[str, list[tuple[int | str, str | None]]] = {}
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def storm(mid: str, body: bytes, headers: dict[str, str]) -> None:
            async def once() -> tuple[int | str, str | None]:
                try:
                    response = await client.post(
                        f"{bridge.url}{side.path}",
                        content=body,
                        headers=headers,
                    )
                except httpx.HTTPError as exc:
                    return type(exc).__name__, None
                if response.status_code != 200:
                    return response.status_code, response.text
                return response.status_code, response.json().get("messageId")

            answers[mid] = list(await asyncio.gather(once(), once(), once()))

        gate = asyncio.Semaphore(20)

        async def bounded(mid: str, body: bytes, headers: dict[str, str]) -> None:
            async with gate:
                await storm(mid, body, headers)

        await asyncio.gather(*(bounded(*m) for m in messages))

    # Every copy is acknowledged with the same ack id: a duplicate gets the first answer.
    for mid, copies in answers.items():
        assert [status for status, _ in copies] == [200, 200, 200], (mid, copies)
        assert len({ack for _, ack in copies}) == 1, (mid, copies)
    expected = {mid for mid, _, _ in messages}
    assert await wait_until(lambda: expected <= set(delivered_ids(sim)), 60 * SCALE)
    await asyncio.sleep(0.5)  # a late duplicate send would show up here
    assert Counter(delivered_ids(sim)) == Counter(expected)
    # Not even the wire saw a second send: the inbox refused the copies before any delivery.
    sends = wire_sends(sim)
    doubled = {mid: sends[mid] for mid in expected if sends[mid] != 1}
    assert doubled == {}
    rows = await count_rows(
        seeded_database, "SELECT count(*), count(DISTINCT external_id) FROM inbox_events"
    )
    assert tuple(rows[0]) == (len(expected), len(expected))
    deliveries = await settled_statuses(seeded_database, len(expected))
    assert deliveries == {"delivered": len(expected)}
