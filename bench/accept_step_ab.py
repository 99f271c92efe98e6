# ruff: noqa: E501  (markdown table rows read better on one line)
"""A/B of the whole Nexus accept batch (the group commit) between two source trees, in one run.

    .venv/bin/python bench/accept_step_ab.py --tree base=0ab4842 --tree head=.   # 3 rounds

What `Inbox._write_batch` does for a batch of signed Nexus webhooks, as the route hands them
over: the inbox insert, `OpenConversations.before_deliveries` (already-sent check, conversation
lookup and open), the delivery insert, the message link insert and the NOTIFY, in one
transaction. Two customer mixes: `fresh` (a new customer per message, as the saturation bench
posts) and `repeat` (50 customers, so most conversations are found open). The items are built
before the clock starts; only the batch write is timed.

Each tree is `git archive`d (`.` is the working tree) and runs in its own worker process (its
`src` first on PYTHONPATH) against one PostgreSQL; the trees alternate within every round and
mix. Reported: client CPU µs per event (`time.process_time` of the worker around the writes),
PostgreSQL CPU µs per event, and each tree's client CPU as a ratio of the first tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CUSTOMER_POOL = 50
NEXUS_CHANNEL = "+16504661149"
WEBHOOK_SECRET = "whsec-bench-3b5e2f8d6a4c1e0b"


# --- the worker: one tree's code ---------------------------------------------------------------


async def _worker(url: str) -> None:
    """Answer `mix size batches tag` lines on stdin with one JSON line of CPU figures."""
    from sqlalchemy import select

    from channel_bridge.db.engine import create_engine, create_sessionmaker
    from channel_bridge.db.models import Channel, Integration
    from channel_bridge.ops.logging import configure_logging
    from channel_bridge.platforms.nexus.fields import FieldMap
    from channel_bridge.platforms.nexus.router import SOURCE, new_ack_id
    from channel_bridge.platforms.nexus.schemas import parse_message
    from channel_bridge.relay.inbox import Inbox, _Pending
    from channel_bridge.settings import Settings

    settings = Settings(database_url=url, env="dev")
    # As the saturation bench runs `serve` (WARNING, JSON lines), to stderr: stdout answers
    # the parent.
    configure_logging(level="WARNING", fmt="json")
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        channel = await session.scalar(
            select(Channel).where(Channel.nexus_channel_id == NEXUS_CHANNEL)
        )
        if channel is None:
            session.add(Integration(integration_id="bench", status="active", source="admin"))
            await session.flush()
            channel = Channel(
                nexus_channel_id=NEXUS_CHANNEL,
                axp_account_id="SANDBX",
                axp_channel_provider_id="bench-provider",
                axp_integration_id="bench",
            )
            session.add(channel)
            await session.flush()
        session.expunge(channel)
    fields = FieldMap.from_settings(settings)
    from channel_bridge.bridge.nexus_to_axp import plan_nexus_message

    inbox = Inbox(sessionmaker)
    loop = asyncio.get_running_loop()

    def pending(tag: str, n: int, customer: int) -> Any:
        entry = {
            "id": f"{tag}-{n}",
            "channelId": NEXUS_CHANNEL,
            "from": NEXUS_CHANNEL,
            "to": f"+1444{customer:07d}",
            "text": f"bench message {n}",
        }
        raw = json.dumps(entry, separators=(",", ":"))
        message = parse_message(entry, fields)
        ack_id = new_ack_id()
        trace_id = uuid.uuid4().hex
        plan = plan_nexus_message(channel, message, ack_id, trace_id)
        return _Pending(
            SOURCE,
            f"{NEXUS_CHANNEL}:id:{message.message_id}",
            {
                "channelId": NEXUS_CHANNEL,
                "traceId": trace_id,
                "ackId": ack_id,
                "message": entry,
                "parsed": message.model_dump(mode="json", by_alias=True, exclude={"extra"}),
            },
            list(plan.deliveries),
            {"messageId": ack_id},
            "message",
            raw,
            loop.create_future(),
            plan.step,
            plan.step_context,
        )

    print("ready", flush=True)
    for line in sys.stdin:
        mix, size, count, tag = line.split()
        size_, count_ = int(size), int(count)
        batches = []
        for b in range(count_ + 1):
            batch = []
            for i in range(size_):
                n = b * size_ + i
                customer = n % CUSTOMER_POOL if mix == "repeat" else n
                batch.append(pending(tag, n, customer))
            batches.append(batch)
        # Conversations of the repeating mix already open, statements prepared: not timed.
        await inbox._write_batch(batches[0])
        if mix == "repeat":
            for warm in range(CUSTOMER_POOL // size_ + 1):
                await inbox._write_batch(
                    [pending(f"{tag}w{warm}", i, i % CUSTOMER_POOL) for i in range(size_)]
                )
        cpu0 = time.process_time()
        for batch in batches[1:]:
            answers, _created = await inbox._write_batch(batch)
            assert all(answer.is_new and answer.delivery_ids for answer in answers)
        cpu = time.process_time() - cpu0
        print(json.dumps({"cpu": cpu, "events": count_ * size_}), flush=True)
    await engine.dispose()


# --- the parent: database, trees, interleaving ------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", action="append", required=True, help="name=rev (. = worktree)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[32])
    parser.add_argument("--mixes", nargs="*", default=["fresh", "repeat"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--events", type=int, default=2048, help="events per tree, mix, size, round"
    )
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import destroy, start_postgres

    from bench.ack_ab import export_tree, tree_cpu
    from channel_bridge.db.migrate import upgrade

    server = start_postgres()
    workers: dict[str, subprocess.Popen[str]] = {}
    figures: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for spec in args.tree:
                name, rev = spec.split("=", 1)
                src = export_tree(rev, Path(scratch))
                database = f"bench_{name}_{uuid.uuid4().hex[:6]}"
                server.janitor(database).init()
                url = server.url(database)
                upgrade(url)  # the worktree's migrations: both trees share the schema
                env = {**os.environ, "PYTHONPATH": str(src)}
                worker = subprocess.Popen(
                    [sys.executable, __file__, "--worker", url],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
                assert worker.stdout is not None
                if worker.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"tree {name} did not start")
                workers[name] = worker
            postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])
            for round_ in range(args.rounds):
                for size in args.sizes:
                    for mix in args.mixes:
                        names = list(workers)
                        if round_ % 2:
                            names.reverse()
                        for name in names:
                            worker = workers[name]
                            assert worker.stdin is not None and worker.stdout is not None
                            batches = max(2, args.events // size)
                            pg0 = tree_cpu(postmaster)
                            worker.stdin.write(
                                f"{mix} {size} {batches} {name}{round_}{mix}{size}\n"
                            )
                            worker.stdin.flush()
                            result = json.loads(worker.stdout.readline())
                            pg = tree_cpu(postmaster) - pg0
                            figures.setdefault((name, size, mix), []).append(
                                (
                                    result["cpu"] / result["events"] * 1e6,
                                    pg / result["events"] * 1e6,
                                )
                            )
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
            worker.wait(30)
        destroy(server)
    first = next(iter(workers))
    print(
        "| batch | mix | tree | client CPU µs/event (per round) | median | ratio | PostgreSQL CPU µs/event |"
    )
    print("|---|---|---|---|---|---|---|")
    for (name, size, mix), rows in figures.items():
        median = statistics.median(c for c, _ in rows)
        base = statistics.median(c for c, _ in figures[(first, size, mix)])
        print(
            f"| {size} | {mix} | {name} | {', '.join(f'{c:.0f}' for c, _ in rows)} | "
            f"**{median:.0f}** | {median / base:.2f} | "
            f"{statistics.median(p for _, p in rows):.0f} |"
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        asyncio.run(_worker(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())
