# ruff: noqa: E501  (markdown table rows read better on one line)
"""A/B of the acknowledgement path: two source trees of the bridge, interleaved, in one run.

    .venv/bin/python bench/ack_ab.py --tree base=6c9abfd --tree head=. --rounds 2
    .venv/bin/python bench/ack_ab.py --tree head=. --profile nexus     # py-spy raw profile too
    .venv/bin/python bench/ack_ab.py --tree head=. --fixed-rate 1000   # open-loop p99 as well
    .venv/bin/python bench/ack_ab.py --tree head=. --fixed-rate 400 --loop-profile head
                                                      # + every event-loop callback timed

Each tree is `git archive`d to a temporary directory (`.` is the working tree as it is) and its
`channel-bridge serve` runs from there (PYTHONPATH first), against the same PostgreSQL, AXP
simulator and bare FastAPI baseline as `bridge_bench.py`. Per round and per kind (Nexus
webhook, AXP MESSAGES callback) the baseline and every tree get one wrk run in turn, each
bridge on a fresh database with the relay worker on. Reported: req/s, the ratio to the
baseline of the same round, and CPU per request from /proc/<pid>/stat (utime + stime) of the
serving process, of PostgreSQL (the postmaster's children) and of the upstream simulator, which
a noisy machine moves far less than req/s, and the whole machine's busy CPU per request
(/proc/stat, wrk included): on two shared cores that is the budget every part draws on.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import shutil
import signal
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
LOOP_PROFILER = ROOT / "bench" / "loop_profile"

from tests.drills.harness import BridgeProcess  # noqa: E402

from bench.bridge_bench import (  # noqa: E402
    Bench,
    axp_post,
    fixed_rate,
    nexus_post,
    percentile,
    stop_process,
    write_bodies,
)

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far, every core (/proc/stat: all but idle and
    iowait): the bridge, PostgreSQL, the simulator and wrk share two cores, so this is the
    budget a webhook is measured against."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU of a process and its live children (PostgreSQL: postmaster and backends)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def export_tree(rev: str, into: Path) -> Path:
    if rev == ".":
        return ROOT / "src"
    if rev.startswith("/"):  # a copy of a src directory
        return Path(rev)
    target = into / rev
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


class TreeBridge(BridgeProcess):
    src: Path = ROOT / "src"
    # The relay in a process of its own (`channel-bridge worker`) beside a `serve` without it.
    separate_worker: bool = False
    worker: subprocess.Popen[bytes] | None = None
    # Where bench/loop_profile writes this process's event-loop profile (None: not profiled).
    loop_profile: Path | None = None

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["PYTHONPATH"] = str(self.src)
        if self.loop_profile is not None:
            env["PYTHONPATH"] += os.pathsep + str(LOOP_PROFILER)
            env["BENCH_LOOP_PROFILE"] = str(self.loop_profile)
        if self.separate_worker:
            env["BRIDGE_WORKER_ENABLED"] = "false"
        return env

    def _spawn(
        self, command: list[str], env: dict[str, str], log_name: str
    ) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / log_name, "wb")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "channel_bridge", *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    async def start(self) -> None:
        self.starts += 1
        self.process = self._spawn(
            ["serve", "--host", "127.0.0.1", "--port", str(self.port)],
            self.environment(),
            f"bridge-{self.port}-{self.starts}.log",
        )
        await self.wait_ready()
        if self.separate_worker:
            self.worker = self._spawn(
                ["worker"],
                {**self.environment(), "BRIDGE_WORKER_ENABLED": "true"},
                f"worker-{self.port}-{self.starts}.log",
            )

    def cpu_seconds(self) -> float:
        """The serving process's CPU, and the relay process's when it runs on its own."""
        assert self.process is not None
        pids = [self.process.pid] + ([self.worker.pid] if self.worker is not None else [])
        return sum(tree_cpu(pid) for pid in pids)

    def stop(self) -> None:
        stop_process(self.worker)
        super().stop()


def loop_profile_signal(bridge: TreeBridge, signum: int) -> None:
    """SIGUSR1 clears the serving process's loop profile, SIGUSR2 writes it (bench/loop_profile)."""
    assert bridge.process is not None and bridge.loop_profile is not None
    if signum == signal.SIGUSR2:
        bridge.loop_profile.unlink(missing_ok=True)  # an earlier round's file is not this one
    os.kill(bridge.process.pid, signum)


def _written_profile(path: Path) -> dict[str, Any] | None:
    return dict(json.loads(path.read_text())) if path.exists() else None


async def read_loop_profile(path: Path) -> dict[str, Any]:
    """The profile written on SIGUSR2 (by the loop's next callback: at once on a live loop)."""
    for _ in range(100):
        if (profile := _written_profile(path)) is not None:
            return profile
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no loop profile at {path}")


def loop_profile_lines(name: str, profile: dict[str, Any]) -> list[str]:
    """The profile as markdown: the loop's busy share, callback lengths, where the time went."""
    elapsed, busy = profile["elapsed_s"], profile["busy_s"]
    bounds = profile["buckets_ms"]
    labels = (
        [f"< {bounds[0]:g}"]
        + [f"{low:g}–{high:g}" for low, high in itertools.pairwise(bounds)]
        + [f"≥ {bounds[-1]:g}"]
    )
    lines = [
        f"\nEvent loop of `{name}` during the open-loop run (bench/loop_profile; asyncio's loop, "
        f"not uvloop): {profile['callbacks']:,} callbacks in {elapsed:.1f} s, busy "
        f"{busy / elapsed:.0%} of the time ({profile['busy_cpu_s'] / elapsed:.0%} on the CPU).\n",
        "| callback length, ms | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
        "| callbacks | " + " | ".join(f"{n:,}" for n in profile["histogram"]) + " |",
        "",
        "| garbage collection | "
        + " | ".join(f"gen {g['generation']}" for g in profile["gc"])
        + " |",
        "|---|---|---|---|",
        "| runs · total ms · longest ms | "
        + " | ".join(f"{g['n']} · {g['total_ms']:.0f} · {g['worst_ms']:.1f}" for g in profile["gc"])
        + " |",
        "",
        "| callback (task @ where it resumed) | n | share of busy time | mean wall µs | mean CPU µs |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| `{row['key']}` | {row['n']:,} | {row['wall_s'] / busy:.1%} | "
        f"{row['mean_wall_us']:.0f} | {row['mean_cpu_us']:.0f} |"
        for row in profile["by_total"][:15]
    ]
    lines += [
        "",
        "Longest callbacks: "
        + "; ".join(f"{row['ms']:.1f} ms `{row['key']}`" for row in profile["longest"][:8]),
    ]
    return lines


async def attempted_share(database_url: str) -> float:
    """Share of the deliveries queued so far that the relay worker has attempted at least once."""
    import asyncpg

    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        row = await connection.fetchrow(
            "SELECT count(*) AS queued, count(*) FILTER (WHERE attempt_count > 0) AS attempted "
            "FROM deliveries"
        )
        return float(row["attempted"] / row["queued"]) if row["queued"] else 0.0
    finally:
        await connection.close()


def nexus_sends(bench: Bench) -> int:
    """Messages the upstream fake has taken on Nexus's send so far (0: it does not serve it)."""
    if not bench.answers_nexus:
        return 0
    return int(bench.upstream_call("GET", "/_bench/stats")["nexus_messages"])


async def commits(database_url: str) -> int:
    """Transactions committed in the bridge's database so far (pg_stat_database)."""
    import asyncpg

    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute("SELECT pg_stat_force_next_flush()")
        return int(
            await connection.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
        )
    finally:
        await connection.close()


async def server_ack_quantiles(port: int, source: str = "nexus.webhook") -> dict[str, float]:
    """p50 and p99 of the bridge's own receipt-to-acknowledgement histogram (bridge_ack_seconds).

    Each is the upper bound of the bucket it falls in, in ms: coarse, but measured inside the
    serving process, so set against the generator's figures it tells the server's share of
    the latency from the client's, the HTTP layer's and the generator's own.
    """
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)).text
    buckets = sorted(
        (float(sample.labels["le"]), sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == "bridge_ack_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket") and sample.labels.get("source") == source
    )
    total = buckets[-1][1] if buckets else 0.0

    def bound(share: float) -> float:
        return next((le * 1000 for le, count in buckets if count >= share * total), float("nan"))

    return {"server_p50": bound(0.5), "server_p99": bound(0.99)}


def rates(runs: list[dict[str, float]]) -> str:
    return ", ".join(f"{r['rps']:,.0f}" for r in runs)


def postmaster_pid(bench: Bench) -> int:
    assert bench.postgres is not None
    return int((bench.postgres.datadir / "postmaster.pid").read_text().split()[0])


def in_turn(trees: dict[str, Path], round_: int) -> list[tuple[str, Path]]:
    """The trees in the order of this round: reversed every other round. The tree run first in
    a round measured faster in both orders (2026-12-04, `…-0200-s32-folds.md` and
    `…-0203-s32-folds-headfirst.md`): a fixed order biases the A/B."""
    order = list(trees.items())
    return order[::-1] if round_ % 2 else order


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tree",
        action="append",
        required=True,
        help="NAME=REV ('.' = work tree, /path = a src dir)",
    )
    parser.add_argument("--kinds", nargs="*", default=["nexus", "axp"], choices=["nexus", "axp"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--env", action="append", default=[], help="NAME:KEY=VALUE for one tree")
    parser.add_argument(
        "--profile",
        nargs="*",
        default=[],
        choices=["nexus", "axp"],
        help="py-spy record, last round",
    )
    parser.add_argument("--fixed-rate", type=int, default=0, help="also an open-loop run at /s")
    parser.add_argument("--fixed-seconds", type=int, default=10)
    parser.add_argument(
        "--separate-worker",
        action="append",
        default=[],
        metavar="NAME",
        help="run this tree's relay as `channel-bridge worker`, a process of its own beside "
        "`serve` (its CPU counted in the serve column)",
    )
    parser.add_argument(
        "--loop-profile",
        action="append",
        default=[],
        metavar="NAME",
        help="profile this tree's event loop during the open-loop run (bench/loop_profile: "
        "every callback timed, on asyncio's loop instead of uvloop)",
    )
    parser.add_argument("--label", default="ab")
    parser.add_argument(
        "--upstream",
        choices=("sandbox", "lean"),
        default="sandbox",
        help="the AXP the relay sends to: the sandbox simulator (bench/upstream.py, as in every "
        "earlier run) or the lean fake (bench/fake_axp.py, ~1/10 of its CPU per send)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ack-ab-"))
    trees: dict[str, Path] = {}
    for spec in args.tree:
        name, rev = spec.split("=", 1)
        trees[name] = export_tree(rev, workdir)
    overrides: dict[str, dict[str, str]] = defaultdict(dict)
    for spec in args.env:
        name, pair = spec.split(":", 1)
        key, value = pair.split("=", 1)
        overrides[name][key] = value

    bench = Bench(quick=True, workdir=workdir, upstream=args.upstream)
    lines: list[str] = []

    def note(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    started = dt.datetime.now(dt.UTC)
    note(f"# ack A/B, {started:%Y-%m-%d %H:%M} UTC\n")
    note(f"Command: `.venv/bin/python bench/ack_ab.py {' '.join(sys.argv[1:])}`\n")
    note("Trees: " + ", ".join(f"{n} = {s}" for n, s in zip(trees, args.tree, strict=True)) + "\n")
    note(f"Upstream AXP: {args.upstream} (bench/{bench.upstream_script})\n")
    results: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    fixed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    loop_profiles: dict[str, list[dict[str, Any]]] = defaultdict(list)
    bench.start()
    baseline, baseline_port = bench.baseline()
    pg = postmaster_pid(bench)
    assert bench.upstream is not None
    upstream = bench.upstream.pid

    async def start_tree(name: str, src: Path) -> TreeBridge:
        bridge = TreeBridge(
            await bench.fresh_database(),
            bench.upstream_url,
            workdir,
            overrides={**bench.bridge_overrides(), **overrides[name]},
        )
        bridge.src = src
        bridge.separate_worker = name in args.separate_worker
        if name in args.loop_profile:
            bridge.loop_profile = workdir / f"loop-{name}-{bridge.port}.json"
        await bridge.start()
        return bridge

    try:
        base_bodies = workdir / "base.tsv"
        write_bodies(base_bodies, [nexus_post("base", n) for n in range(2000)])
        for round_ in range(args.rounds):
            for kind in args.kinds:
                cpu0, machine0 = cpu_seconds(baseline.pid), machine_cpu()
                figures = bench.wrk(baseline_port, base_bodies, args.duration)
                figures["cpu_us"] = (cpu_seconds(baseline.pid) - cpu0) / figures["requests"] * 1e6
                figures["machine_us"] = (machine_cpu() - machine0) / figures["requests"] * 1e6
                results[("baseline", kind)].append(figures)
                for name, src in in_turn(trees, round_):
                    bridge = await start_tree(name, src)
                    try:
                        assert bridge.process is not None
                        pid = bridge.process.pid
                        if kind == "axp":
                            await bench.open_axp_conversations(bridge, f"{name}{round_}")
                        bodies = workdir / f"{kind}-{name}-{round_}.tsv"
                        make = nexus_post if kind == "nexus" else axp_post
                        write_bodies(bodies, [make(f"{name}{round_}", n) for n in range(60_000)])
                        profiler = None
                        if kind in args.profile and round_ == args.rounds - 1:
                            out = (
                                ROOT
                                / "bench"
                                / "results"
                                / f"{started:%Y-%m-%d-%H%M}-profile-{args.label}-{name}-{kind}.txt"
                            )
                            profiler = subprocess.Popen(  # noqa: ASYNC220
                                [
                                    str(Path(sys.executable).parent / "py-spy"),
                                    "record",
                                    "-r",
                                    "250",
                                    "--format",
                                    "raw",
                                    "-o",
                                    str(out),
                                    "-d",
                                    str(args.duration),
                                    "-p",
                                    str(pid),
                                ],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                            )
                            await asyncio.sleep(0.5)
                        commits0 = await commits(bridge.database_url)
                        nexus0 = nexus_sends(bench)
                        cpu0, pg0 = bridge.cpu_seconds(), tree_cpu(pg)
                        upstream0, machine0 = cpu_seconds(upstream), machine_cpu()
                        figures = bench.wrk(bridge.port, bodies, args.duration)
                        n = figures["requests"]
                        figures["cpu_us"] = (bridge.cpu_seconds() - cpu0) / n * 1e6
                        figures["pg_us"] = (tree_cpu(pg) - pg0) / n * 1e6
                        figures["upstream_us"] = (cpu_seconds(upstream) - upstream0) / n * 1e6
                        figures["machine_us"] = (machine_cpu() - machine0) / n * 1e6
                        figures["attempted"] = await attempted_share(bridge.database_url)
                        figures["nexus_sent"] = (nexus_sends(bench) - nexus0) / n
                        await asyncio.sleep(1.2)  # backends flush their statistics
                        figures["commits"] = (await commits(bridge.database_url) - commits0) / n
                        if profiler is not None:
                            profiler.wait(60)
                        results[(name, kind)].append(figures)
                        bodies.unlink()
                    finally:
                        bridge.stop()
            if args.fixed_rate:
                for name, src in in_turn(trees, round_):
                    bridge = await start_tree(name, src)
                    try:
                        posts = [
                            nexus_post(f"fr{name}{round_}", n)
                            for n in range(args.fixed_rate * args.fixed_seconds)
                        ]
                        if bridge.loop_profile is not None:
                            loop_profile_signal(bridge, signal.SIGUSR1)
                        result = await fixed_rate(bridge.port, posts, args.fixed_rate)
                        if bridge.loop_profile is not None:
                            loop_profile_signal(bridge, signal.SIGUSR2)
                            loop_profiles[name].append(await read_loop_profile(bridge.loop_profile))
                        server = await server_ack_quantiles(bridge.port)
                        attempted = await attempted_share(bridge.database_url)
                        # The backlog left by the run, if any: how long the relay takes to drain it.
                        drain_started = time.monotonic()
                        while await attempted_share(bridge.database_url) < 1.0:
                            if time.monotonic() - drain_started > 60:
                                break
                            await asyncio.sleep(0.25)
                        drained_s = time.monotonic() - drain_started
                    finally:
                        bridge.stop()
                    lat = result.latencies_ms
                    fixed[name].append(
                        {
                            "p50": percentile(lat, 0.5),
                            "p99": percentile(lat, 0.99),
                            "p999": percentile(lat, 0.999),
                            "statuses": dict(result.statuses),
                            "saturated_after": result.saturated_after,
                            "attempted": attempted,
                            "drained_s": drained_s,
                            **server,
                        }
                    )
    finally:
        baseline.terminate()
        baseline.wait(10)
        bench.stop()

    note(
        "| kind | tree | req/s (per round) | ratio to bare FastAPI (per round) | median ratio | serve CPU µs/req | PostgreSQL CPU µs/req | upstream simulator CPU µs/req | machine CPU µs/req (every process) | commits/req (approx.) | deliveries attempted when wrk ended | non-2xx |"
    )
    note("|---|---|---|---|---|---|---|---|---|---|---|---|")
    summary: dict[str, Any] = {}
    for kind in args.kinds:
        base = results[("baseline", kind)]
        note(
            f"| {kind} | bare FastAPI | {rates(base)} | 1 | 1 | "
            f"{statistics.median(r['cpu_us'] for r in base):.0f} | – | – | "
            f"{statistics.median(r['machine_us'] for r in base):.0f} | – | – | {sum(r['errors_status'] for r in base)} |"
        )
        for name in trees:
            runs = results[(name, kind)]
            ratios = [r["rps"] / b["rps"] for r, b in zip(runs, base, strict=True)]
            summary[f"{name}.{kind}"] = {
                "rps": [r["rps"] for r in runs],
                "baseline": [b["rps"] for b in base],
                "ratio": statistics.median(ratios),
                "cpu_us": statistics.median(r["cpu_us"] for r in runs),
                "pg_us": statistics.median(r["pg_us"] for r in runs),
                "upstream_us": statistics.median(r["upstream_us"] for r in runs),
                "machine_us": statistics.median(r["machine_us"] for r in runs),
                "commits": statistics.median(r["commits"] for r in runs),
                "attempted": statistics.median(r["attempted"] for r in runs),
                "nexus_sent": statistics.median(r["nexus_sent"] for r in runs),
            }
            cell = summary[f"{name}.{kind}"]
            note(
                f"| {kind} | {name} | {rates(runs)} | "
                f"{', '.join(f'{x:.2f}' for x in ratios)} | **{statistics.median(ratios):.2f}** | "
                f"{cell['cpu_us']:.0f} | {cell['pg_us']:.0f} | {cell['upstream_us']:.0f} | "
                f"{cell['machine_us']:.0f} | {cell['commits']:.2f} | "
                f"{cell['attempted']:.0%} | "
                f"{sum(r['errors_status'] for r in runs)} |"
            )
    if "axp" in args.kinds:
        sent = ", ".join(f"{name} {summary[f'{name}.axp']['nexus_sent']:.0%}" for name in trees)
        note(
            "\nAXP MESSAGES callbacks are agent messages in conversations their customers opened "
            "first, so each is relayed to Nexus"
            + (
                f": sent to Nexus while wrk ran, per callback: {sent}."
                if bench.answers_nexus
                else "; this upstream does not answer Nexus, so none were opened and every "
                "callback was unroutable."
            )
        )
    if fixed:
        note(
            f"\nOpen loop at {args.fixed_rate}/s for {args.fixed_seconds} s (signed Nexus webhooks; each tree with its own --env):\n"
        )
        note(
            "| tree | p50 ms | p99 ms | p99.9 ms | in the bridge (its histogram's bucket): "
            "p50 / p99 ms | statuses | fell behind after "
            "| deliveries attempted when the run ended | then drained in s |"
        )
        note("|---|---|---|---|---|---|---|---|---|")
        for name, rows in fixed.items():
            for row in rows:
                note(
                    f"| {name} | {row['p50']:.1f} | {row['p99']:.1f} | {row['p999']:.1f} | "
                    f"≤ {row['server_p50']:g} / ≤ {row['server_p99']:g} | {row['statuses']} | {row['saturated_after'] or '–'} | "
                    f"{row['attempted']:.0%} | {row['drained_s']:.1f} |"
                )
            summary[f"{name}.fixed_rate"] = rows
        for name, profiles in loop_profiles.items():
            for profile in profiles:
                for line in loop_profile_lines(name, profile):
                    note(line)
            summary[f"{name}.loop_profile"] = profiles
    out = ROOT / "bench" / "results" / f"{started:%Y-%m-%d-%H%M}-{args.label}.md"
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nwritten {out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
