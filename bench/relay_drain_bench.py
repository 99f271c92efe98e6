# ruff: noqa: E501  (markdown table rows read better on one line)
"""Relay drain against a forwarder baseline (not a test): how close the durable relay comes to
a bare HTTP forwarder on the same machine, in the same run.

    .venv/bin/python bench/relay_drain_bench.py                 # 6,000 over 200 conversations, 3 rounds
    .venv/bin/python bench/relay_drain_bench.py --quick         # one round
    .venv/bin/python bench/relay_drain_bench.py --worker-concurrency 16 64 128

Everything runs on loopback against bench/fake_axp.py (AXP's send-message contract, answering
in 10 ms, in its own process) and a throwaway PostgreSQL 15 (tests/support, fsync off):

- **forwarder baselines** (bench/forwarder_bench.py): the same number of AXP sends with no
  database, 64 in flight, through aiohttp directly and through the bridge's own AXP client
  (`AxpPlatform`, token auth, the bridge's default transport);
- **the drain**: a backlog of `-n` Nexus webhooks over `--conversations` conversations is
  accepted by `channel-bridge serve` with its worker off (the outbox fills, conversations and
  message links are written at accept as in production), then `channel-bridge worker` starts
  with default settings and delivers it. The rate is counted from the first message the
  fake receives to the last; the worker's CPU (utime + stime from /proc over the same span)
  divided by the messages is its CPU per delivery, and PostgreSQL's is reported beside it.
  Every message must arrive once (the fake counts duplicates) and in order within its
  conversation.

Rounds interleave the baselines and the drain, so a noisy minute on the shared machine hits
both; the ratios use the medians. Results: bench/results/<UTC date-time>-drain.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.drills.harness import BridgeProcess, bridge_executable, seed_database  # noqa: E402
from tests.support.postgres import PostgresServer, destroy, start_postgres  # noqa: E402

from bench.bridge_bench import closed_loop, nexus_post  # noqa: E402
from bench.forwarder_bench import FakeAxpHandle, forwarder_run, start_fake_axp  # noqa: E402
from channel_bridge.db.migrate import upgrade  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Settings the drill harness sets for its own purposes (fast retries, fast polling): the drain
# runs the worker with the defaults instead.
HARNESS_ONLY = (
    "BRIDGE_WORKER_POLL_INTERVAL_S",
    "BRIDGE_RETRY_SCHEDULE_S",
    "BRIDGE_RETRY_THROTTLED_MIN_S",
)


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_cpu_s() -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        if raw[raw.index("(") + 1 : raw.rindex(")")].startswith("postgres"):
            fields = raw.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


class Drain:
    def __init__(self, postgres: PostgresServer, fake: FakeAxpHandle, workdir: Path) -> None:
        self.postgres, self.fake, self.workdir = postgres, fake, workdir
        self.databases = 0

    async def backlog(self, n: int, conversations: int) -> str:
        """A fresh database holding `n` accepted webhooks' deliveries; its URL."""
        self.databases += 1
        name = f"drain_{os.getpid()}_{self.databases}"
        self.postgres.janitor(name).init()
        url = self.postgres.url(name)
        upgrade(url)
        await seed_database(url)
        accepting = BridgeProcess(
            url, self.fake.base_url, self.workdir, overrides={"BRIDGE_WORKER_ENABLED": "false"}
        )
        await accepting.start()
        try:
            posts = [
                nexus_post(f"drain{self.databases}", i, conversation=i % conversations)
                for i in range(n)
            ]
            statuses = await closed_loop(accepting.port, posts, 64)
        finally:
            accepting.stop()
        if statuses.get(200, 0) != n:
            raise RuntimeError(f"backlog not accepted: {dict(statuses)}")
        return url

    async def run(
        self, url: str, n: int, conversations: int, overrides: dict[str, str]
    ) -> dict[str, Any]:
        self.fake.reset()
        env = BridgeProcess(url, self.fake.base_url, self.workdir).environment()
        for name in HARNESS_ONLY:
            env.pop(name, None)
        env.update({"BRIDGE_WORKER_ENABLED": "true", **overrides})
        log = open(self.workdir / f"worker-{self.databases}.log", "wb")  # noqa: ASYNC230
        worker = subprocess.Popen(  # noqa: ASYNC220 (forking is instant; the wait below is async)
            [*bridge_executable(), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            started = time.monotonic()
            cpu_first = pg_first = None
            while True:
                stats = self.fake.stats()
                if cpu_first is None and stats["messages"] > 0:
                    cpu_first, pg_first = process_cpu_s(worker.pid), postgres_cpu_s()
                if stats["messages"] >= n:
                    break
                if worker.poll() is not None or time.monotonic() - started > 600:
                    raise RuntimeError(f"worker exited or stalled at {stats['messages']}/{n}")
                await asyncio.sleep(0.05)
            cpu_last, pg_last = process_cpu_s(worker.pid), postgres_cpu_s()
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                raise RuntimeError("the worker did not stop within 30 s of SIGTERM") from None
        received = self.fake.received()
        span = received[-1][2] - received[0][2]
        by_conversation: dict[int, list[int]] = defaultdict(list)
        for key, _dialog, _at in received:
            number = int(key.rsplit("-", 1)[1])
            by_conversation[number % conversations].append(number)
        assert cpu_first is not None and pg_first is not None
        return {
            "delivered": len(received),
            "rate": (len(received) - 1) / span if span > 0 else float("nan"),
            "worker_cpu_us": (cpu_last - cpu_first) / len(received) * 1e6,
            "postgres_cpu_us": (pg_last - pg_first) / len(received) * 1e6,
            "duplicates": stats["duplicates"],
            "out_of_order": sum(1 for seq in by_conversation.values() if seq != sorted(seq)),
        }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-n", type=int, default=6000, help="messages in the backlog (and sends per baseline run)"
    )
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        nargs="*",
        default=[],
        help="drain again at these BRIDGE_WORKER_CONCURRENCY values (default: only the default)",
    )
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    workdir = Path(tempfile.mkdtemp(prefix="drain-bench-"))
    postgres = start_postgres()
    fake = start_fake_axp(10)
    drain = Drain(postgres, fake, workdir)
    variants: list[tuple[str, dict[str, str]]] = [("defaults", {})] + [
        (f"concurrency {c}", {"BRIDGE_WORKER_CONCURRENCY": str(c)}) for c in args.worker_concurrency
    ]
    figures: dict[str, list[dict[str, Any]]] = defaultdict(list)
    today = dt.datetime.now(dt.UTC)
    try:
        for round_number in range(1, rounds + 1):
            for stack in ("aiohttp", "bridge"):
                fake.reset()
                result = await forwarder_run(
                    stack, base_url=fake.base_url, n=args.n, concurrency=64
                )
                figures[f"forwarder {stack}"].append(result)
                print(
                    f"round {round_number}: forwarder {stack}: {result['sends_per_s']:,.0f}/s, {result['cpu_us_per_send']:.0f} µs/send",
                    flush=True,
                )
            for label, overrides in variants:
                url = await drain.backlog(args.n, args.conversations)
                result = await drain.run(url, args.n, args.conversations, overrides)
                figures[f"drain {label}"].append(result)
                print(
                    f"round {round_number}: drain ({label}): {result['rate']:,.0f}/s, worker {result['worker_cpu_us']:.0f} µs/delivery, PostgreSQL {result['postgres_cpu_us']:.0f} µs/delivery, duplicates {result['duplicates']}, out of order {result['out_of_order']}",
                    flush=True,
                )
    finally:
        fake.stop()
        destroy(postgres)
        shutil.rmtree(workdir, ignore_errors=True)

    aiohttp_rate = median([r["sends_per_s"] for r in figures["forwarder aiohttp"]])
    lines = [
        f"# Relay drain against a forwarder, {today:%Y-%m-%d %H:%M} UTC{' (--quick)' if args.quick else ''}",
        "",
        f"Machine: {os.cpu_count()} cores, shared. Fake AXP (bench/fake_axp.py) answering in 10 ms; PostgreSQL 15 (fsync off). "
        f"Backlog: {args.n:,} Nexus webhooks over {args.conversations} conversations, accepted by `channel-bridge serve` (worker off), "
        f"delivered by `channel-bridge worker` with default settings. Medians of {rounds} round(s); rounds interleave baselines and drains. "
        f"Command: `.venv/bin/python bench/relay_drain_bench.py {' '.join(sys.argv[1:])}`.",
        "",
        "| what | messages/s | ratio to the aiohttp forwarder | CPU per message (µs) | per round (/s) |",
        "|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {"aiohttp_forwarder": aiohttp_rate}
    for name, results in figures.items():
        if name.startswith("forwarder"):
            rate = median([r["sends_per_s"] for r in results])
            cpu = median([r["cpu_us_per_send"] for r in results])
            cpu_text = f"{cpu:.0f} (forwarder process)"
        else:
            rate = median([r["rate"] for r in results])
            cpu = median([r["worker_cpu_us"] for r in results])
            pg = median([r["postgres_cpu_us"] for r in results])
            cpu_text = f"worker {cpu:.0f}, PostgreSQL {pg:.0f}"
            bad = sum(r["duplicates"] + r["out_of_order"] for r in results)
            cpu_text += "" if not bad else f" (**{bad} duplicates or out-of-order conversations**)"
        summary[name] = {"rate": rate, "cpu_us": cpu, "runs": results}
        per_round = ", ".join(f"{r.get('sends_per_s', r.get('rate')):,.0f}" for r in results)
        lines.append(
            f"| {name} | **{rate:,.0f}** | {rate / aiohttp_rate:.2f} | {cpu_text} | {per_round} |"
        )
    drain_ratio = summary["drain defaults"]["rate"] / aiohttp_rate
    lines += [
        "",
        f"Target: the drain at ≥ 0.25 of the aiohttp forwarder (long-term 0.5): **{drain_ratio:.2f}**, "
        + ("met." if drain_ratio >= 0.25 else "missed."),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{today:%Y-%m-%d-%H%M}{'-quick' if args.quick else ''}-drain.md"
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=str))
    print("\n".join(lines))
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    import uvloop  # the forwarders run on uvloop, as uvicorn and `channel-bridge worker` do

    sys.exit(uvloop.run(main()))
