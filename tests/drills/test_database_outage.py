"""Database outage: PostgreSQL unreachable under load, then back, without a bridge restart.

The bridge reaches PostgreSQL through a loopback TCP proxy the drill cuts (every live
connection dropped, new ones refused) and restores; the shared test server keeps running.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
from sqlalchemy.engine import make_url

from tests.drills.harness import (
    SCALE,
    BridgeProcess,
    Outcome,
    TcpProxy,
    count_rows,
    delivered_ids,
    new_run,
    nexus_signer,
    order_violations,
    scaled,
    send_conversations,
    wait_until,
)


async def test_database_outage_answers_503_and_recovers_without_restart(
    seeded_database, axp, bridges, tmp_path
) -> None:
    sim, upstream = axp
    url = make_url(seeded_database)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    bridge = BridgeProcess(
        proxied,
        upstream.url,
        tmp_path,
        overrides={
            "BRIDGE_DB_CONNECT_TIMEOUT_S": "2",
            # An outcome that could not be recorded during the cut keeps its lease until it
            # expires; 3 s here (production 60 s) so the drill sees the re-send promptly.
            "BRIDGE_WORKER_LEASE_S": "3",
        },
    )
    bridges.append(bridge)
    try:
        await bridge.start()
        nexus, run = nexus_signer(), new_run()
        conversations = 10
        outcome = Outcome()
        stop = asyncio.Event()
        # Load before, during and after the outage (each conversation in order, 20 ms apart).
        sender = asyncio.create_task(
            send_conversations(
                [bridge.url],
                run=run,
                conversations=conversations,
                per_conversation=scaled(1000),
                outcome=outcome,
                nexus=nexus,
                stop=stop,
                pause_s=0.02,
            )
        )
        await asyncio.sleep(1.0)
        before = len(outcome.acknowledged())
        proxy.cut()
        during: Counter[int | str] = Counter()
        ready_during: list[int] = []
        async with httpx.AsyncClient(timeout=10.0) as client:
            outage_s = min(3.0 * SCALE, 30.0)
            loop = asyncio.get_running_loop()
            cut_at = loop.time()
            marker = len(outcome.results)
            while loop.time() - cut_at < outage_s:
                ready_during.append((await client.get(f"{bridge.url}/readyz")).status_code)
                await asyncio.sleep(0.25)
            during.update(outcome.results[m] for m in list(outcome.results)[marker:])
            proxy.restore()
            # Service resumes on the same process: readiness comes back by itself.
            assert await wait_until_ready(client, bridge.url, 30)
        await asyncio.sleep(1.0)
        stop.set()
        await sender
        assert bridge.process is not None and bridge.process.poll() is None, (
            "the bridge must not restart"
        )
        await check_outcome(
            seeded_database, sim, bridge, outcome, during, ready_during, before, conversations
        )
        check_fault_logging(bridge.log_text())
    finally:
        await proxy.stop()


def check_fault_logging(log_text: str) -> None:
    """The worker's and housekeeping's retry loops log an outage once, with no traceback
    (every second a traceback is 3,600 an hour per pod)."""
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    loops = [
        line
        for line in lines
        if line["event"].startswith(
            ("claiming deliveries", "housekeeping job", "recording delivery outcomes")
        )
    ]
    assert [line["event"] for line in loops].count("claiming deliveries failing") == 1, loops
    assert not [line for line in loops if "exception" in line], loops


async def check_outcome(
    seeded_database, sim, bridge, outcome, during, ready_during, before, conversations
) -> None:
    """What the outage drill promises, checked after the load (the proxy still forwarding)."""
    # During the outage: only 503 (never 2xx, never 500). Readiness said so too.
    statuses_during = set(during)
    assert statuses_during and statuses_during <= {503, 200}, during
    # A 200 during the outage could only be one accepted just before the cut.
    assert during[503] > 0 and during[200] <= conversations, during
    assert set(ready_during) == {503}
    assert 500 not in outcome.statuses()
    assert set(outcome.statuses()) <= {200, 503}, outcome.statuses()
    assert before > 0 and len(outcome.acknowledged()) > before

    # Nothing accepted is lost. A request whose COMMIT reached PostgreSQL just as the link was
    # cut is the one unavoidable ambiguity: stored, but answered 503 because the commit's reply
    # never came back. Nexus redelivers a 503 and the inbox answers it with the stored id, so it
    # still arrives once. Each conversation sends one request at a time, so at most one such
    # request per conversation can exist.
    acknowledged = outcome.acknowledged()
    delivered = await wait_until(lambda: acknowledged <= set(delivered_ids(sim)), 60 * SCALE)
    if not delivered:
        missing = sorted(acknowledged - set(delivered_ids(sim)))
        rows = await count_rows(
            seeded_database,
            (
                "SELECT d.status, d.attempt_count, d.locked_until, d.last_error, i.external_id"
                " FROM deliveries d JOIN inbox_events i ON i.id = d.inbox_event_id"
                " WHERE d.status != 'delivered' LIMIT 5"
            ),
        )
        raise AssertionError(
            f"{len(missing)} acknowledged never delivered, e.g. {missing[:3]}; rows {rows}; "
            f"bridge log: {bridge.log_tail(5)}"
        )
    counts = Counter(delivered_ids(sim))
    committed_unanswered = set(counts) - acknowledged
    assert acknowledged <= set(counts) and set(counts.values()) == {1}
    assert committed_unanswered <= outcome.refused() | outcome.dropped(), committed_unanswered
    assert len(committed_unanswered) <= conversations, committed_unanswered
    stored = await count_rows(seeded_database, "SELECT count(*) FROM inbox_events")
    assert stored[0][0] == len(acknowledged) + len(committed_unanswered)
    # A conversation whose message was refused skips it (the sender moved on), but what was
    # accepted still arrives in the order it was sent.
    assert order_violations(sim) == []


async def wait_until_ready(client: httpx.AsyncClient, url: str, timeout_s: float) -> bool:
    async def ready() -> bool:
        try:
            return (await client.get(f"{url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if await ready():
            return True
        await asyncio.sleep(0.1)
    return False
