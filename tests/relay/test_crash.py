"""Process boundaries (PostgreSQL): a SIGKILLed worker loses nothing; two workers never overlap."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from channel_bridge.db.models import Attempt, Delivery
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.worker import RelayWorker
from tests.conftest import make_settings
from tests.relay.conftest import drain

pytestmark = pytest.mark.postgres_only
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _postgres_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("several worker processes need PostgreSQL")


async def _spawn(database_url: str, record: Path, mode: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.relay.worker_process",
        database_url,
        str(record),
        mode,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )

    async def ready() -> None:
        while (line := await process.stdout.readline()) and line.strip() != b"ready":
            pass  # log lines before the worker is up
        assert line, "the worker process exited before it was ready"

    try:
        await asyncio.wait_for(ready(), timeout=60)
    except BaseException:
        process.kill()  # never leave a worker behind, even when the test fails here
        await process.wait()
        raise
    # Keep draining its output so a chatty worker never blocks on a full pipe.
    asyncio.get_running_loop().create_task(process.stdout.read())
    return process


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def _wait_until(predicate, *, limit_s: float = 120.0) -> None:
    """Poll the database (the other processes cannot signal us) until `predicate` holds."""
    async with asyncio.timeout(limit_s):
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def _queue(sessionmaker, count: int, partitions: int = 0) -> list[int]:
    inbox = Inbox(sessionmaker)

    async def one(n: int) -> list[int]:
        partition = f"conv-{n // 2 % partitions}" if partitions and n % 2 == 0 else None
        acceptance = await inbox.accept(
            source="test",
            external_id=f"e-{n}",
            payload={},
            deliveries=[DeliveryRequest("test.sink", {"n": n}, partition)],
        )
        return acceptance.delivery_ids

    ids: list[int] = []
    for chunk in range(0, count, 200):
        for result in await asyncio.gather(
            *(one(n) for n in range(chunk, min(count, chunk + 200)))
        ):
            ids += result
    return ids


async def test_sigkilled_worker_loses_nothing_and_resends_at_most_once(
    database_url, sessionmaker, registry, sink, clock, tmp_path
) -> None:
    record = tmp_path / "calls.jsonl"
    ids = await _queue(sessionmaker, 10)
    process = await _spawn(database_url, record, "hang")
    try:
        # Every call has reached the "upstream" and is hanging: the worker holds all leases.
        async def all_called() -> bool:
            return len(_records(record)) == len(ids)

        await _wait_until(all_called, limit_s=60)
        async with sessionmaker() as session:
            rows = (await session.execute(select(Delivery))).scalars().all()
        assert {r.status for r in rows} == {"in_flight"}
        assert {r.locked_by for r in rows} == {f"proc-{process.pid}"}
        lease_end = max(r.locked_until for r in rows)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()

    worker = RelayWorker(
        sessionmaker, registry, make_settings(database_url), clock=clock, worker_id="w-after-crash"
    )
    clock.set(lease_end - timedelta(seconds=1))
    assert await worker.run_once() == 0  # the dead process's leases still hold
    clock.set(lease_end + timedelta(seconds=1))
    await drain(worker, clock)

    async with sessionmaker() as session:
        rows = (await session.execute(select(Delivery))).scalars().all()
        attempts = (await session.execute(select(Attempt))).scalars().all()
    assert sorted(r.id for r in rows if r.status == "delivered") == sorted(ids)
    # The killed worker's calls were never recorded: one attempt row each, number 2.
    assert sorted((a.delivery_id, a.number, a.worker_id) for a in attempts) == [
        (i, 2, "w-after-crash") for i in sorted(ids)
    ]
    first_calls = Counter(r["key"] for r in _records(record))
    second_calls = Counter(c.idempotency_key for c in sink.calls)
    expected = Counter(f"dlv-{i}" for i in ids)
    assert first_calls == expected and second_calls == expected  # sent once more, same key


async def test_two_worker_processes_drain_2000_without_overlap(
    database_url, sessionmaker, tmp_path
) -> None:
    record = tmp_path / "calls.jsonl"
    processes: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(2):
            processes.append(await _spawn(database_url, record, "drain"))
        ids = await _queue(sessionmaker, 2000, partitions=20)

        async def drained() -> bool:
            async with sessionmaker() as session:
                left = await session.scalar(
                    select(func.count()).select_from(Delivery).where(Delivery.status != "delivered")
                )
            return left == 0

        await _wait_until(drained)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()

    async with sessionmaker() as session:
        attempts = (await session.execute(select(Attempt))).scalars().all()
        deliveries = {d.id: d for d in (await session.execute(select(Delivery))).scalars()}
    assert len(deliveries) == 2000 and set(deliveries) == set(ids)
    # One attempt per delivery: nothing was attempted twice, concurrently or otherwise.
    assert Counter(a.delivery_id for a in attempts) == Counter(ids)
    assert {a.worker_id for a in attempts} == {f"proc-{p.pid}" for p in processes}
    records = _records(record)
    starts = Counter(r["key"] for r in records if r["event"] == "start")
    assert starts == Counter(f"dlv-{i}" for i in ids)
    # Between a call's start and its end no other call for the same delivery began.
    open_calls: set[str] = set()
    for r in records:
        assert (r["key"] in open_calls) == (r["event"] == "end")
        (open_calls.add if r["event"] == "start" else open_calls.discard)(r["key"])
    # Per partition, calls started in sequence order even with two processes competing.
    by_partition: dict[str, list[int]] = defaultdict(list)
    for r in records:
        if r["event"] == "start" and r["partition"]:
            by_partition[r["partition"]].append(deliveries[r["delivery_id"]].sequence)
    assert len(by_partition) == 20
    assert all(seqs == sorted(seqs) for seqs in by_partition.values())
