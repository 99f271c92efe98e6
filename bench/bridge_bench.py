# ruff: noqa: E501  (markdown table rows read better on one line)
"""Whole-bridge benchmarks (not a test): `make bench`, or

    .venv/bin/python bench/bridge_bench.py            # full: >= 20 s runs, medians of 3
    .venv/bin/python bench/bridge_bench.py --quick    # short runs, one each

Everything runs on this machine over loopback: a throwaway PostgreSQL 15 (tests/support),
the AXP simulator in its own process answering in 10 ms (bench/upstream.py), and the bridge as
`channel-bridge serve` (one worker process, relay worker on). Load generators:

- saturation throughput: `wrk` (Debian) with bench/lua/bodies.lua posting precomputed, signed,
  unique bodies (HMAC cannot be computed in wrk's Lua, so the signatures are precomputed);
- fixed-rate latency and end-to-end: an open-loop asyncio generator in this process (wrk2
  style: latency counted from each request's *scheduled* send time, so a stall is not hidden
  by coordinated omission). `hey -q` was not used: it repeats one body, and a repeated
  webhook id measures the duplicate path, not an accept.

Results go to bench/results/<date>.md (figures measured in this run; ratios against the
baseline app measured in the same run).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import TEST_CALLBACK_TOKEN  # noqa: E402
from tests.drills.harness import (  # noqa: E402
    BridgeProcess,
    bridge_executable,
    free_port,
    seed_database,
)
from tests.support.postgres import PostgresServer, destroy, start_postgres  # noqa: E402

from bench.fake_axp import dialog_ids_of  # noqa: E402
from channel_bridge.db.migrate import upgrade  # noqa: E402
from channel_bridge.mappings.conversations import provider_dialog_id  # noqa: E402
from channel_bridge.platforms.nexus.signing import sign  # noqa: E402
from channel_bridge.sandbox.mode import DEMO_NEXUS_CHANNEL, DEMO_WEBHOOK_SECRET  # noqa: E402

WEBHOOK_PATH = f"/nexus/channels/{DEMO_NEXUS_CHANNEL}/webhook"
CALLBACK_PATH = f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications"
UVICORN_OPTIONS = [
    "--proxy-headers",
    "--forwarded-allow-ips",
    "*",
    "--no-access-log",
    "--log-level",
    "warning",
]


SATURATED_LAG_MS = 5000.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- bodies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Post:
    key: str
    path: str
    signature: str
    body: bytes


def customer(conversation: int) -> str:
    """The customer address of bench conversation number `conversation`."""
    return f"+1444{conversation:07d}"


def nexus_post(run: str, n: int, conversation: int | None = None) -> Post:
    conversation = n if conversation is None else conversation
    key = f"b{run}-{n}"
    body = json.dumps(
        {
            "id": key,
            "channelId": DEMO_NEXUS_CHANNEL,
            "from": DEMO_NEXUS_CHANNEL,
            "to": customer(conversation),
            "text": f"bench message {n}",
        },
        separators=(",", ":"),
    ).encode()
    return Post(key, WEBHOOK_PATH, sign(body, DEMO_WEBHOOK_SECRET, "hex"), body)


# Agent messages (AXP MESSAGES callbacks) answer this many conversations, which customers
# opened first (`conversation_openers`, as in production), so the relay sends each to Nexus.
AXP_CONVERSATIONS = 100


def conversation_openers(run: str) -> list[Post]:
    """A customer message for each conversation that `axp_post` answers: send these first."""
    return [nexus_post(f"open{run}", n, conversation=n) for n in range(AXP_CONVERSATIONS)]


def axp_post(run: str, n: int) -> Post:
    key = f"a{run}-{n}"
    # Generation 1 of the conversation the opener of this customer started; the engagement and
    # dialog ids the AXP fake answered that opener with.
    provider_dialog = provider_dialog_id(DEMO_NEXUS_CHANNEL, customer(n % AXP_CONVERSATIONS), 1)
    engagement_id, dialog_id = dialog_ids_of(provider_dialog)
    event = {
        "eventType": "MESSAGES",
        "accountId": "SANDBX",
        "messageId": key,
        "correlationId": key,
        "dialogId": dialog_id,
        "engagementId": engagement_id,
        "providerDialogId": provider_dialog,
        "channelProviderId": "sandbox-messaging-provider",
        "channelId": "Messaging",
        "senderParticipantId": "agent-1",
        "status": "SENT",
        "senderParticipantType": "AGENT",
        "senderParticipantName": "Agent",
        "eventDate": "2026-11-24T01:00:00.000Z",
        "receivedAt": "2026-11-24T01:00:00.000Z",
        "body": {
            "elementType": "text",
            "elementText": {"text": f"agent {n}", "textFormat": "PLAINTEXT"},
        },
        "headers": {"sourceType": "nexus-async", "sourceAddress": DEMO_NEXUS_CHANNEL},
    }
    return Post(key, CALLBACK_PATH, "", json.dumps(event, separators=(",", ":")).encode())


async def outbox_settled(database_url: str, timeout_s: float = 60.0) -> None:
    """Wait until no delivery is pending or in flight."""
    import asyncpg

    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        deadline = time.monotonic() + timeout_s
        while await connection.fetchval(
            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'in_flight')"
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the outbox did not settle")
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


def write_bodies(path: Path, posts: list[Post]) -> None:
    with path.open("w") as out:
        for post in posts:
            out.write(f"{post.path}\t{post.signature}\t{post.body.decode()}\n")


# --- a tiny HTTP/1.1 client for the fixed-rate generator ---------------------------------------


# uvicorn closes a keep-alive connection after 5 s idle; the generator retires its own first,
# so a reused connection is never one the server is closing (that showed up as
# IncompleteReadError on a few requests per run).
CLIENT_IDLE_LIMIT_S = 4.0


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = time.monotonic()

    @property
    def stale(self) -> bool:
        return time.monotonic() - self.idle_since > CLIENT_IDLE_LIMIT_S

    def close(self) -> None:
        self.writer.close()

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, post: Post) -> int:
        head = (
            f"POST {post.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(post.body)}\r\n"
        )
        if post.signature:
            head += f"X-Hub-Signature: {post.signature}\r\n"
        self.writer.write(head.encode() + b"\r\n" + post.body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = int(re.search(rb"(?i)content-length: *(\d+)", raw).group(1))  # type: ignore[union-attr]
        await self.reader.readexactly(length)
        self.idle_since = time.monotonic()
        return status


@dataclass
class RateResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int | str, int] = field(default_factory=lambda: defaultdict(int))
    acked_at: dict[str, float] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)
    lag_ms: float = 0.0
    saturated_after: int | None = None


async def fixed_rate(
    port: int, posts: list[Post], rate: float, max_connections: int = 256
) -> RateResult:
    """Open loop: post i is due at start + i/rate whatever happened to the ones before."""
    result = RateResult()
    idle: list[Connection] = []
    opened = 0
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2

    async def one(post: Post, due: float) -> None:
        nonlocal opened
        sent = time.time()
        connection = idle.pop() if idle else None
        while connection is not None and connection.stale:
            connection.close()
            opened -= 1
            connection = idle.pop() if idle else None
        if connection is None:
            opened += 1
            connection = await Connection.open(port)
        try:
            status = await connection.post(post)
        except (OSError, asyncio.IncompleteReadError) as exc:
            result.statuses[type(exc).__name__] += 1
            return
        now = loop.time()
        result.latencies_ms.append((now - due) * 1000)
        result.statuses[status] += 1
        if 200 <= status < 300:
            result.acked_at[post.key] = time.time()
            result.sent_at[post.key] = sent
        idle.append(connection)

    for i, post in enumerate(posts):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            result.lag_ms = max(result.lag_ms, -delay * 1000)
            if result.lag_ms > SATURATED_LAG_MS:
                # Every connection is busy and the schedule is seconds behind: the server is
                # below this rate; stop rather than queue for minutes.
                result.saturated_after = i
                break
        # Polling (not an Event): a free connection is usually back within the next loop turn.
        while not idle and opened >= max_connections:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        task = loop.create_task(one(post, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return result


async def closed_loop(
    port: int, posts: list[Post], concurrency: int, on_progress: Callable[[int], None] | None = None
) -> dict[int | str, int]:
    statuses: dict[int | str, int] = defaultdict(int)
    queue = iter(posts)
    done = 0

    async def worker() -> None:
        nonlocal done
        connection = await Connection.open(port)
        for post in queue:
            try:
                statuses[await connection.post(post)] += 1
            except (OSError, asyncio.IncompleteReadError) as exc:
                statuses[type(exc).__name__] += 1
                connection = await Connection.open(port)
            done += 1
            if on_progress is not None:
                on_progress(done)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


# --- processes ---------------------------------------------------------------------------------


class SeparateRelayWorker(BridgeProcess):
    """`channel-bridge serve` without its relay worker, plus `channel-bridge worker` beside it.

    Both processes get the same configuration; stopping the bridge stops the worker too.
    """

    worker: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "BRIDGE_WORKER_ENABLED": "false"}

    async def start(self) -> None:
        await super().start()
        worker_env = {**super().environment(), **self.overrides, "BRIDGE_WORKER_ENABLED": "true"}
        log = open(self.log_dir / f"worker-{self.port}.log", "wb")  # noqa: ASYNC230
        self.worker = subprocess.Popen(  # noqa: ASYNC220
            [*bridge_executable(), "worker"], env=worker_env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def stop(self) -> None:
        stop_process(self.worker)
        super().stop()


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a side process (a relay worker) if it still runs; kill it after 20 s."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


UPSTREAM_SCRIPTS = {"sandbox": "upstream.py", "lean": "fake_axp.py"}


class Bench:
    def __init__(
        self, quick: bool, workdir: Path, separate_worker: bool = False, upstream: str = "sandbox"
    ) -> None:
        self.quick = quick
        self.workdir = workdir
        # The AXP the relay sends to: "sandbox" is the sandbox simulator (bench/upstream.py,
        # FastAPI, the whole AXP surface); "lean" is bench/fake_axp.py (the send and token
        # contract only, about a tenth of the CPU per request), for runs that measure the
        # bridge's CPU against a baseline on the same two cores.
        if upstream not in UPSTREAM_SCRIPTS:
            raise ValueError(f"upstream {upstream!r}: one of {sorted(UPSTREAM_SCRIPTS)}")
        self.upstream_script = UPSTREAM_SCRIPTS[upstream]
        # True: the relay worker runs as its own `channel-bridge worker` process.
        self.separate_worker = separate_worker
        # The issue's rate is 200 msg/s; a lower one shows the latency below saturation.
        self.e2e_rate = 200
        self.postgres: PostgresServer | None = None
        self.upstream: subprocess.Popen[bytes] | None = None
        self.upstream_port = free_port()
        self.databases = 0
        self.lines: list[str] = []
        self.figures: dict[str, Any] = {}

    def note(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)

    # infrastructure
    def start(self) -> None:
        self.postgres = start_postgres()
        self.upstream = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / self.upstream_script),
                "--port",
                str(self.upstream_port),
                "--latency-ms",
                "10",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.upstream_url}/_bench/stats", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("upstream simulator did not start")

    def stop(self) -> None:
        if self.upstream is not None:
            self.upstream.terminate()
            self.upstream.wait(10)
        if self.postgres is not None:
            destroy(self.postgres)

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    def upstream_call(self, method: str, path: str, **kwargs: Any) -> Any:
        return httpx.request(method, f"{self.upstream_url}{path}", timeout=60, **kwargs).json()

    async def fresh_database(self) -> str:
        assert self.postgres is not None
        self.databases += 1
        name = f"bench_{os.getpid()}_{self.databases}"
        self.postgres.janitor(name).init()
        url = self.postgres.url(name)
        upgrade(url)
        await seed_database(url)
        return url

    @property
    def answers_nexus(self) -> bool:
        """Whether the upstream also answers Nexus's send message (the lean fake does)."""
        return self.upstream_script == UPSTREAM_SCRIPTS["lean"]

    def bridge_overrides(self) -> dict[str, str]:
        """Every bench bridge's settings beyond the harness's."""
        overrides = {"BRIDGE_RETRY_SCHEDULE_S": "[1, 2, 5]"}
        if self.answers_nexus:
            overrides["BRIDGE_NEXUS_BASE_URL"] = self.upstream_url
        return overrides

    async def bridge(self, database_url: str, **overrides: str) -> BridgeProcess:
        worker_off = overrides.get("BRIDGE_WORKER_ENABLED") == "false"
        kind = SeparateRelayWorker if self.separate_worker and not worker_off else BridgeProcess
        process = kind(
            database_url,
            self.upstream_url,
            self.workdir,
            overrides={**self.bridge_overrides(), **overrides},
        )
        await process.start()
        return process

    async def open_axp_conversations(self, bridge: BridgeProcess, run: str) -> None:
        """Before agent messages are measured: their customers open the conversations, and the
        relay sends those openers on, so that the measured run's relay work is the agent
        messages' own (to Nexus). Without a Nexus upstream (the sandbox simulator serves AXP
        only) the conversations stay unopened and the agent messages are unroutable."""
        if not self.answers_nexus:
            return
        statuses = await closed_loop(bridge.port, conversation_openers(run), 8)
        assert set(statuses) <= {200, 202}, f"opening conversations: {dict(statuses)}"
        await outbox_settled(bridge.database_url)

    def baseline(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "bench.baseline_app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *UVICORN_OPTIONS,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(f"http://127.0.0.1:{port}/x", content=b"{}", timeout=1)
                return process, port
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("baseline did not start")

    # --- 1. saturation throughput with wrk ---------------------------------------------------

    def wrk(self, port: int, bodies: Path, duration_s: int) -> dict[str, float]:
        output = subprocess.run(
            [
                "wrk",
                "-t2",
                "-c64",
                f"-d{duration_s}s",
                "--timeout",
                "10s",
                "-s",
                str(ROOT / "bench" / "lua" / "bodies.lua"),
                f"http://127.0.0.1:{port}",
                "--",
                str(bodies),
                "2",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        figures = json.loads(output.split("JSON ", 1)[1].splitlines()[0])
        figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
        return figures

    async def throughput(self) -> None:
        duration = 5 if self.quick else 20
        runs = 1 if self.quick else 3
        self.note(
            f"\n## 1. Acknowledgement throughput (wrk -t2 -c64 -d{duration}s, {runs} run(s))\n"
        )
        bodies_count = 40_000 if self.quick else 120_000
        results: dict[str, list[dict[str, float]]] = defaultdict(list)
        baseline, baseline_port = self.baseline()
        try:
            for run in range(runs):
                for kind in ("nexus", "axp"):
                    url = await self.fresh_database()
                    bridge = await self.bridge(url)
                    try:
                        if kind == "axp":
                            await self.open_axp_conversations(bridge, f"{run}")
                        bodies = self.workdir / f"{kind}-{run}.tsv"
                        make = nexus_post if kind == "nexus" else axp_post
                        write_bodies(bodies, [make(f"{kind}{run}", n) for n in range(bodies_count)])
                        figures = self.wrk(bridge.port, bodies, duration)
                        figures["unique"] = figures["requests"] <= bodies_count
                        results[kind].append(figures)
                        bodies.unlink()
                    finally:
                        bridge.stop()
                    base_bodies = self.workdir / "base.tsv"
                    write_bodies(base_bodies, [nexus_post("base", n) for n in range(2000)])
                    results[f"baseline-{kind}"].append(
                        self.wrk(baseline_port, base_bodies, duration)
                    )
        finally:
            baseline.terminate()
            baseline.wait(10)
        self.note(
            "| endpoint | req/s (median) | p50 ms | p99 ms | non-2xx | baseline req/s (same run) | ratio |"
        )
        self.note("|---|---|---|---|---|---|---|")
        for kind, label in (("nexus", "signed Nexus webhook"), ("axp", "AXP MESSAGES callback")):
            rps = statistics.median(r["rps"] for r in results[kind])
            base = statistics.median(r["rps"] for r in results[f"baseline-{kind}"])
            p50 = statistics.median(r["p50_ms"] for r in results[kind])
            p99 = statistics.median(r["p99_ms"] for r in results[kind])
            errors = sum(r["errors_status"] for r in results[kind])
            ratios = [
                r["rps"] / b["rps"]
                for r, b in zip(results[kind], results[f"baseline-{kind}"], strict=True)
            ]
            ratio = statistics.median(ratios)
            self.figures[f"throughput_{kind}"] = {"rps": rps, "baseline": base, "ratio": ratio}
            self.note(
                f"| {label} | {rps:,.0f} | {p50:.1f} | {p99:.1f} | {errors} | {base:,.0f} "
                f"(p50 {statistics.median(r['p50_ms'] for r in results[f'baseline-{kind}']):.1f} ms) | "
                f"**{ratio:.0%}** (target ≥ 50 %) |"
            )
        self.note(
            "\nPer-run req/s: "
            + "; ".join(
                f"{k}: " + ", ".join(f"{r['rps']:,.0f}" for r in v) for k, v in results.items()
            )
        )

    # --- 2. latency at a fixed rate -------------------------------------------------------------

    async def fixed_rate_latency(self) -> None:
        rate, duration = 1000, (10 if self.quick else 30)
        runs = 1 if self.quick else 3
        self.note(
            f"\n## 2. Acknowledgement latency at a fixed {rate}/s for {duration} s "
            f"(open-loop asyncio generator, {runs} run(s))\n"
        )
        rows = []
        for run in range(runs):
            url = await self.fresh_database()
            bridge = await self.bridge(url)
            try:
                posts = [nexus_post(f"fr{run}", n) for n in range(rate * duration)]
                result = await fixed_rate(bridge.port, posts, rate)
            finally:
                bridge.stop()
            lat = result.latencies_ms
            rows.append(
                (
                    percentile(lat, 0.5),
                    percentile(lat, 0.99),
                    percentile(lat, 0.999),
                    dict(result.statuses),
                    result.lag_ms,
                    result.saturated_after,
                )
            )
        saturated = [r[5] for r in rows if r[5] is not None]
        if saturated:
            self.note(
                f"**The bridge could not sustain {rate}/s**: the schedule fell "
                f"{SATURATED_LAG_MS / 1000:.0f} s behind after {min(saturated):,} requests "
                f"(~{min(saturated) / (SATURATED_LAG_MS / 1000 + min(saturated) / rate):,.0f}/s "
                "achieved); the latencies below are of a saturated server.\n"
            )
        p50, p99, p999 = (statistics.median(r[i] for r in rows) for i in range(3))
        self.figures["fixed_rate"] = {"p50": p50, "p99": p99, "p999": p999}
        self.note("| p50 ms | p99 ms | p99.9 ms | statuses | target |")
        self.note("|---|---|---|---|---|")
        self.note(
            f"| {p50:.1f} | {p99:.1f} | {p999:.1f} | {rows[-1][3]} | p99 ≤ 25 ms: "
            f"{'met' if p99 <= 25 else 'missed'} |"
        )
        self.note(
            "\nPer run (p50/p99/p99.9 ms, generator lag ms): "
            + "; ".join(f"{r[0]:.1f}/{r[1]:.1f}/{r[2]:.1f} (lag {r[4]:.1f})" for r in rows)
        )

    # --- 3. end-to-end relay latency ---------------------------------------------------------------

    async def end_to_end(self) -> None:
        rate, duration, conversations = self.e2e_rate, (10 if self.quick else 30), 100
        self.note(
            f"\n## 3. End-to-end relay latency at {rate} msg/s over {conversations} conversations, "
            f"{duration} s (ack received → upstream received, 10 ms upstream)\n"
        )
        url = await self.fresh_database()
        self.upstream_call("POST", "/_bench/reset")
        bridge = await self.bridge(url)
        try:
            posts = [
                nexus_post("e2e", n, conversation=n % conversations) for n in range(rate * duration)
            ]
            result = await fixed_rate(bridge.port, posts, rate)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if self.upstream_call("GET", "/_bench/stats")["messages"] >= len(result.acked_at):
                    break
                await asyncio.sleep(0.5)
            arrivals = self.upstream_call("GET", "/_bench/received")
        finally:
            bridge.stop()
        delays = [
            (at - result.acked_at[key]) * 1000 for key, at in arrivals if key in result.acked_at
        ]
        # Order is only promised for what was accepted one after the other: a pair counts as
        # reordered if `a` was acknowledged before `b` was sent, yet `b` reached AXP first.
        # (An open-loop sender on a saturated server sends `b` before `a` is acknowledged.)
        by_conversation: dict[int, list[str]] = defaultdict(list)
        for key, _at in arrivals:
            by_conversation[int(key.rsplit("-", 1)[1]) % conversations].append(key)
        misordered = 0
        for keys in by_conversation.values():
            misordered += sum(
                1
                for i, later in enumerate(keys)
                for earlier in keys[i + 1 :]
                if later in result.sent_at
                and earlier in result.acked_at
                and result.acked_at[earlier] < result.sent_at[later]
            )
        p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
        self.figures["e2e"] = {"p50": p50, "p99": p99}
        self.note(
            "| delivered | p50 ms | p99 ms | max ms | reordered (accepted one after the other) | target |"
        )
        self.note("|---|---|---|---|---|---|")
        self.note(
            f"| {len(delays)}/{len(result.acked_at)} | {p50:.1f} | {p99:.1f} | {max(delays):.1f} | "
            f"{misordered} pairs | p99 ≤ 60 ms: {'met' if p99 <= 60 else 'missed'} |"
        )
        self.note(
            "\nThe delay is measured from the moment the client had the 2xx (so it excludes the "
            "ack itself) to the simulator's receipt, and it includes the simulator's 10 ms."
        )

    # --- 4. token single-flight ---------------------------------------------------------------------

    async def token_single_flight(self) -> None:
        from channel_bridge.platforms.axp.auth import TokenCache, build_axp_http
        from channel_bridge.platforms.axp.client import AxpMessagingClient
        from channel_bridge.platforms.axp.schemas import BodyElement, ElementText, SendAsyncMessage
        from channel_bridge.sandbox.mode import AXP_APP_KEY, AXP_CLIENT_SECRET
        from channel_bridge.settings import Settings

        count = 1000
        self.note(f"\n## 4. Token single-flight: {count} concurrent sends on a cold token cache\n")
        settings = Settings(
            env="dev",
            axp_base_url=self.upstream_url,
            axp_account_id="SANDBX",
            axp_client_id="sandbox-client",
            axp_client_secret=AXP_CLIENT_SECRET,
            axp_app_key=AXP_APP_KEY,
        )
        http = build_axp_http(settings, cache=TokenCache())
        client = AxpMessagingClient(http, "SANDBX")

        def message(n: int, run: str) -> SendAsyncMessage:
            return SendAsyncMessage(
                channelProviderId="sandbox-messaging-provider",
                channelId="Messaging",
                businessAccountName="sandbox-integration-0001",
                customerIdentifiers={"phoneNumbers": [f"+1333{n:07d}"]},
                providerMessageId=f"tok-{run}-{n}",
                correlationId=f"tok-{run}-{n}",
                body=BodyElement(
                    elementType="text", elementText=ElementText(text="x", textFormat="PLAINTEXT")
                ),
            )

        try:
            before = self.upstream_call("GET", "/_bench/stats")["token_requests"]
            started = time.perf_counter()
            await asyncio.gather(*(client.send_message(message(n, "cold")) for n in range(count)))
            cold = time.perf_counter() - started
            tokens = self.upstream_call("GET", "/_bench/stats")["token_requests"] - before
            started = time.perf_counter()
            await asyncio.gather(*(client.send_message(message(n, "warm")) for n in range(count)))
            warm = time.perf_counter() - started
        finally:
            await http.aclose()
        self.figures["token"] = {"token_requests": tokens, "cold_s": cold, "warm_s": warm}
        self.note(
            "| token requests (cold, 1,000 concurrent) | wall time cold | wall time pre-warmed | target |"
        )
        self.note("|---|---|---|---|")
        self.note(
            f"| {tokens} | {cold:.2f} s | {warm:.2f} s | exactly 1 token request: "
            f"{'met' if tokens == 1 else 'missed'} |"
        )

    # --- 5. memory -------------------------------------------------------------------------------------

    async def memory(self) -> None:
        total = 20_000 if self.quick else 100_000
        self.note(f"\n## 5. Memory: RSS of the bridge process over {total:,} accepted webhooks\n")
        url = await self.fresh_database()
        bridge = await self.bridge(url)
        samples: dict[str, float] = {}
        try:
            assert bridge.process is not None
            pid = bridge.process.pid
            samples["start"] = rss_mb(pid)

            def progress(done: int) -> None:
                if done == total // 2:
                    samples["half"] = rss_mb(pid)

            batch = 10_000
            statuses: dict[int | str, int] = defaultdict(int)
            for start in range(0, total, batch):
                posts = [nexus_post("mem", n) for n in range(start, start + batch)]
                for status, n in (
                    await closed_loop(bridge.port, posts, 64, lambda d, s=start: progress(s + d))
                ).items():
                    statuses[status] += n
            await asyncio.sleep(2)
            samples["end"] = rss_mb(pid)
        finally:
            bridge.stop()
        growth = (samples["end"] - samples["half"]) / samples["half"]
        self.figures["memory"] = {**samples, "growth": growth}
        self.note("| RSS at start | at 50 % | at 100 % | growth 50 %→100 % | statuses | targets |")
        self.note("|---|---|---|---|---|---|")
        self.note(
            f"| {samples['start']:.0f} MB | {samples['half']:.0f} MB | {samples['end']:.0f} MB | "
            f"{growth:+.1%} | {dict(statuses)} | ≤ 150 MB: {'met' if samples['end'] <= 150 else 'missed'}; "
            f"growth ≤ 5 %: {'met' if growth <= 0.05 else 'missed'} |"
        )

    # --- 6. backlog drain --------------------------------------------------------------------------------

    async def backlog(self) -> None:
        total, conversations = (5_000 if self.quick else 50_000), 200
        self.note(
            f"\n## 6. Backlog drain: {total:,} pending deliveries over {conversations} conversations\n"
        )
        url = await self.fresh_database()
        # The outage: accepted while no worker could deliver, so the outbox holds the backlog.
        accepting = await self.bridge(url, BRIDGE_WORKER_ENABLED="false")
        try:
            statuses = await closed_loop(
                accepting.port,
                [nexus_post("drain", n, conversation=n % conversations) for n in range(total)],
                64,
            )
        finally:
            accepting.stop()
        self.upstream_call("POST", "/_bench/reset")
        started = time.perf_counter()
        bridge = await self.bridge(url)
        try:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                if self.upstream_call("GET", "/_bench/stats")["messages"] >= total:
                    break
                await asyncio.sleep(0.25)
            elapsed = time.perf_counter() - started
            arrivals = self.upstream_call("GET", "/_bench/received")
        finally:
            bridge.stop()
        order: dict[int, list[int]] = defaultdict(list)
        for key, _at in arrivals:
            n = int(key.rsplit("-", 1)[1])
            order[n % conversations].append(n)
        misordered = sum(1 for seq in order.values() if seq != sorted(seq))
        rate = len(arrivals) / elapsed
        self.figures["drain"] = {"rate": rate, "delivered": len(arrivals), "misordered": misordered}
        self.note(
            "| accepted | delivered | drain time (incl. bridge start) | deliveries/s | conversations out of order |"
        )
        self.note("|---|---|---|---|---|")
        self.note(
            f"| {statuses.get(200, 0):,} | {len(arrivals):,} | {elapsed:.1f} s | {rate:,.0f} | {misordered} |"
        )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


BENCHMARKS = (
    "throughput",
    "fixed_rate_latency",
    "end_to_end",
    "token_single_flight",
    "memory",
    "backlog",
)


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs, one each")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these")
    parser.add_argument(
        "--relay-worker",
        choices=("in-process", "separate"),
        default="in-process",
        help="run the relay worker inside `serve` (default) or as `channel-bridge worker`",
    )
    parser.add_argument(
        "--e2e-rate", type=int, default=200, help="messages/s for the end-to-end benchmark"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    separate = args.relay_worker == "separate"
    bench = Bench(args.quick, workdir, separate_worker=separate)
    bench.e2e_rate = args.e2e_rate
    today = dt.datetime.now(dt.UTC)
    bench.note(
        f"# channel-bridge benchmarks, {today:%Y-%m-%d %H:%M} UTC{' (--quick)' if args.quick else ''}\n"
    )
    bench.note(
        f"Machine: {os.cpu_count()} cores, shared; PostgreSQL 15 (fsync off, test cluster); "
        "bridge = `channel-bridge serve` (1 process, "
        + (
            "relay worker in its own `channel-bridge worker` process"
            if separate
            else "relay worker on, in the same process"
        )
        + "); AXP simulator in its own process answering in 10 ms. Command: "
        f"`.venv/bin/python bench/bridge_bench.py {' '.join(sys.argv[1:])}`."
    )
    bench.start()
    try:
        for name in args.only or BENCHMARKS:
            try:
                await getattr(bench, name)()
            except Exception as exc:  # one failed benchmark must not lose the others' figures
                bench.note(f"\n**{name} did not complete:** {type(exc).__name__}: {exc}")
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results = (
        ROOT
        / "bench"
        / "results"
        / f"{today:%Y-%m-%d-%H%M}{'-quick' if args.quick else ''}{'-separate' if separate else ''}.md"
    )
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(bench.lines) + "\n")
    (results.with_suffix(".json")).write_text(json.dumps(bench.figures, indent=2, default=str))
    print(f"\nwritten {results}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
