"""Relay benchmark (not a test): accept N envelopes, measure accepted/s and accepted->delivered.

    .venv/bin/python bench/relay_bench.py                      # SQLite in a temp dir
    .venv/bin/python bench/relay_bench.py --database-url postgresql://user@host/db -n 5000

Each envelope is one `Inbox.accept` (group commit on) with one delivery to an in-process
destination that sleeps `--delay-ms` (the upstream's latency). Callers run `--concurrency` at
a time, like webhook requests. A RelayWorker woken by accept delivers them. Figures: accept
throughput (and ack latency p50/p99), and accepted->delivered latency p50/p99. The schema is
created with the migrations; on PostgreSQL the relay tables are emptied first.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.db.migrate import upgrade
from channel_bridge.relay.destinations import DeliveryContext, DestinationRegistry
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.worker import RelayWorker
from channel_bridge.settings import Settings


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    database_url = args.database_url
    if database_url is None:
        database_url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    settings = Settings(
        database_url=database_url,
        env="dev",
        log_level="WARNING",
        worker_concurrency=args.worker_concurrency,
        inbox_group_commit_window_ms=args.window_ms,
    )
    upgrade(settings.database_url)
    engine = create_engine(settings)
    async with engine.begin() as connection:
        tables = "attempts, deliveries, inbox_events"
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        else:
            for table in tables.split(", "):
                await connection.execute(text(f"DELETE FROM {table}"))
    sessionmaker = create_sessionmaker(engine)

    accepted_at: dict[int, float] = {}
    relay_latency: list[float] = []
    done = asyncio.Event()

    async def destination(ctx: DeliveryContext) -> None:
        if args.delay_ms:
            await asyncio.sleep(args.delay_ms / 1000)
        relay_latency.append(time.perf_counter() - accepted_at[ctx.payload["n"]])
        if len(relay_latency) == args.n:
            done.set()

    registry = DestinationRegistry()
    registry.register("bench.sink", destination)
    worker = RelayWorker(sessionmaker, registry, settings, worker_id="bench")
    inbox = Inbox(
        sessionmaker,
        on_accepted=worker.wake,
        window_ms=args.window_ms,
        max_batch=settings.inbox_group_commit_max_batch,
    )
    await worker.start()

    ack_latency: list[float] = []
    gate = asyncio.Semaphore(args.concurrency)

    async def accept(n: int) -> None:
        async with gate:
            started = time.perf_counter()
            accepted_at[n] = started
            await inbox.accept(
                source="bench",
                external_id=f"evt-{n}",
                payload={"n": n},
                deliveries=[
                    DeliveryRequest(
                        "bench.sink",
                        {"n": n},
                        f"conv-{n % args.partitions}" if args.partitions else None,
                    )
                ],
            )
            ack_latency.append(time.perf_counter() - started)

    async def offer(n: int) -> None:
        if args.rate:  # an open-loop arrival schedule, like webhook traffic
            await asyncio.sleep(max(0.0, began + n / args.rate - time.perf_counter()))
        await accept(n)

    began = time.perf_counter()
    await asyncio.gather(*(offer(n) for n in range(args.n)))
    accept_elapsed = time.perf_counter() - began
    await asyncio.wait_for(done.wait(), timeout=args.timeout_s)
    total_elapsed = time.perf_counter() - began
    await worker.stop()
    await engine.dispose()

    offered = f"{args.rate:g}/s offered" if args.rate else "flood"
    table = Table(
        title=f"relay bench ({engine.dialect.name}, n={args.n}, {offered}, "
        f"accept concurrency {args.concurrency}, worker concurrency {args.worker_concurrency}, "
        f"partitions {args.partitions}, delay {args.delay_ms:g} ms)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("accepted / s", f"{args.n / accept_elapsed:,.0f}")
    table.add_row("ack p50 (ms)", f"{percentile(ack_latency, 0.5) * 1000:.1f}")
    table.add_row("ack p99 (ms)", f"{percentile(ack_latency, 0.99) * 1000:.1f}")
    table.add_row("delivered / s (end to end)", f"{args.n / total_elapsed:,.0f}")
    table.add_row("accepted->delivered p50 (ms)", f"{percentile(relay_latency, 0.5) * 1000:.1f}")
    table.add_row("accepted->delivered p99 (ms)", f"{percentile(relay_latency, 0.99) * 1000:.1f}")
    table.add_row("accepted->delivered mean (ms)", f"{statistics.fmean(relay_latency) * 1000:.1f}")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="envelopes to accept")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="destination latency")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent accept callers")
    parser.add_argument("--worker-concurrency", type=int, default=16)
    parser.add_argument(
        "--partitions",
        type=int,
        default=0,
        help="spread envelopes over this many ordered partitions (0: unordered)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered envelopes per second (0: all at once, a flood)",
    )
    parser.add_argument("--window-ms", type=float, default=1.5, help="group-commit window")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
