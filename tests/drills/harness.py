"""The pieces every drill needs: bridge processes, simulators on loopback, a cuttable DB proxy.

The bridge runs as real `channel-bridge serve` subprocesses (the point of a drill is the
process boundary: SIGKILL, two replicas, a database that goes away under a live pool). The
AXP simulator is served by uvicorn on 127.0.0.1 inside the test's event loop, so the drill
reads exactly what it received (`sim.messages` is after the simulator's dedupe on
providerMessageId + correlationId; `sim.requests` is everything on the wire).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr

from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.sandbox.axp import AxpSimulator
from channel_bridge.sandbox.genesys_cloud import GenesysCloudSandbox
from channel_bridge.sandbox.mode import (
    AXP_APP_KEY,
    AXP_CLIENT_SECRET,
    DEMO_GENESYS_CLOUD_INTEGRATION,
    DEMO_GENESYS_CLOUD_SECRET_TOKEN,
    DEMO_NEXUS_CHANNEL,
    DEMO_WEBHOOK_SECRET,
    SANDBOX_ACCOUNT,
    seed_demo_channel,
)
from channel_bridge.sandbox.nexus import NexusSandbox
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings
from tests.conftest import TEST_ADMIN_TOKEN, TEST_CALLBACK_TOKEN

SECRET_KEY = "drill-secret-key-3e5d7c9b1a2f4e6d8c0b"
CHANNEL = DEMO_NEXUS_CHANNEL
# `make drills` sets e.g. BRIDGE_DRILL_SCALE=10 for the full-size drills; CI runs scale 1.
SCALE = max(0.1, float(os.environ.get("BRIDGE_DRILL_SCALE", "1")))


def scaled(n: int) -> int:
    return max(1, int(n * SCALE))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bridge_executable() -> list[str]:
    exe = Path(sys.executable).parent / "channel-bridge"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "channel_bridge"]


# --- simulators ---------------------------------------------------------------------------


class LoopbackServer:
    """An ASGI app served by uvicorn on 127.0.0.1 inside the running event loop."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            backlog=2048,
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)


def make_axp_simulator(latency_s: float = 0.01) -> AxpSimulator:
    sim = AxpSimulator(
        account_id=SANDBOX_ACCOUNT,
        client_id="sandbox-client",
        client_secret=AXP_CLIENT_SECRET,
        app_key=AXP_APP_KEY,
        agent=False,
    )
    sim.faults.latency_s = latency_s
    return sim


def delivered_ids(sim: AxpSimulator) -> list[str]:
    """providerMessageIds the simulator accepted as new messages (after its dedupe)."""
    return [m["providerMessageId"] for m in sim.messages if m.get("providerMessageId")]


def wire_sends(sim: AxpSimulator) -> Counter[str]:
    """How many send calls carried each providerMessageId (what crossed the wire)."""
    counts: Counter[str] = Counter()
    for request in sim.recorded(method="POST", path_contains="/messages"):
        with contextlib.suppress(Exception):
            counts[request.json.get("providerMessageId")] += 1
    return counts


def order_violations(sim: AxpSimulator) -> list[str]:
    """Conversations whose messages reached AXP out of the order they were sent in."""
    seen: dict[str, list[int]] = defaultdict(list)
    for message in sim.messages:
        pmid = message.get("providerMessageId") or ""
        if pmid.startswith("drill-"):
            _prefix, conversation, sequence = pmid.rsplit("-", 2)
            seen[conversation].append(int(sequence))
    return [c for c, seqs in seen.items() if seqs != sorted(seqs)]


# --- the database --------------------------------------------------------------------------


async def seed_database(url: str) -> None:
    """The demo integration and Nexus channel (webhook secret DEMO_WEBHOOK_SECRET)."""
    engine = create_engine(Settings(database_url=url, env="dev"))
    try:
        await seed_demo_channel(create_sessionmaker(engine), SecretBox(SecretStr(SECRET_KEY)))
    finally:
        await engine.dispose()


async def count_rows(url: str, sql: str) -> Any:
    from sqlalchemy import text

    engine = create_engine(Settings(database_url=url, env="dev"))
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text(sql))).all()
    finally:
        await engine.dispose()


async def settled_statuses(url: str, expected: int, timeout_s: float = 30.0) -> dict[str, int]:
    """Delivery statuses once `expected` rows are finished (outcomes are written in batches)."""
    sql = "SELECT status, count(*) FROM deliveries GROUP BY status"
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = {status: n for status, n in await count_rows(url, sql)}
        if statuses.get("delivered", 0) >= expected or time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(0.2)


class TcpProxy:
    """A loopback TCP proxy the drill can cut (drop every connection, refuse new) and restore."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.open = True
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    def cut(self) -> None:
        self.open = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.open = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


# --- the bridge process --------------------------------------------------------------------


@dataclass
class BridgeProcess:
    """`channel-bridge serve` in a subprocess, configured through BRIDGE_* variables."""

    database_url: str
    axp_url: str
    log_dir: Path
    overrides: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env.update(
            {
                "BRIDGE_ENV": "dev",
                "BRIDGE_SANDBOX": "false",
                "BRIDGE_DATABASE_URL": self.database_url,
                "BRIDGE_SECRET_KEY": SECRET_KEY,
                "BRIDGE_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
                "BRIDGE_AXP_CALLBACK_TOKEN": TEST_CALLBACK_TOKEN,
                "BRIDGE_PUBLIC_BASE_URL": self.url,
                "BRIDGE_AXP_BASE_URL": self.axp_url,
                "BRIDGE_AXP_ACCOUNT_ID": SANDBOX_ACCOUNT,
                "BRIDGE_AXP_CLIENT_ID": "sandbox-client",
                "BRIDGE_AXP_CLIENT_SECRET": AXP_CLIENT_SECRET,
                "BRIDGE_AXP_APP_KEY": AXP_APP_KEY,
                "BRIDGE_AXP_SUBSCRIPTION_RECONCILE_ENABLED": "false",
                # Nexus is only an inbound source in these drills; nothing is sent to it.
                "BRIDGE_NEXUS_BASE_URL": "http://127.0.0.1:9",
                "BRIDGE_NEXUS_CCID": "00000000-0000-4000-8000-00000000cc1d",
                "BRIDGE_WORKER_ENABLED": "true",
                "BRIDGE_WORKER_POLL_INTERVAL_S": "0.2",
                # Time-compressed retries: 0.05 s .. 0.5 s instead of 5 s .. 8 h.
                "BRIDGE_RETRY_SCHEDULE_S": str([0.05, 0.1, 0.2, 0.4] + [0.5] * 16),
                "BRIDGE_RETRY_THROTTLED_MIN_S": "0.2",
                "BRIDGE_LOG_LEVEL": "WARNING",
                "BRIDGE_LOG_FORMAT": "json",
            }
        )
        env.update(self.overrides)
        return env

    async def start(self) -> None:
        self.starts += 1
        # Opening a log file and forking are instant; the readiness wait below is async.
        log = open(self.log_dir / f"bridge-{self.port}-{self.starts}.log", "wb")  # noqa: ASYNC230
        self.process = subprocess.Popen(  # noqa: ASYNC220
            [*bridge_executable(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        await self.wait_ready()

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"bridge exited with {self.process.returncode}: {self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"bridge not ready in {timeout_s} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, leases stay held until they expire."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 30) -> str:
        text = "\n".join(
            p.read_text(errors="replace")
            for p in sorted(self.log_dir.glob(f"bridge-{self.port}-*.log"))
        )
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("bridge-*.log"))
        )


# --- Nexus's side of the webhook ------------------------------------------------------------


NEXUS_PATH = f"/nexus/channels/{CHANNEL}/webhook"
GENESYS_CLOUD_PATH = f"/genesys-cloud/integrations/{DEMO_GENESYS_CLOUD_INTEGRATION}/webhook"


class NexusSide:
    """Nexus posting the drill's agent messages (the seeded demo Nexus channel)."""

    backend = "nexus"
    path = NEXUS_PATH

    def __init__(self) -> None:
        self.sim = NexusSandbox(ccid="00000000-0000-4000-8000-00000000cc1d")
        self.sim.add_channel(
            CHANNEL, webhook_secret=DEMO_WEBHOOK_SECRET, api_secret="unused-api-secret-000000"
        )

    def signed(self, mid: str, to: str, text: str) -> tuple[bytes, dict[str, str]]:
        document = {"id": mid, "channelId": CHANNEL, "from": CHANNEL, "to": to, "text": text}
        return self.sim.signed_webhook(CHANNEL, document)


class GenesysCloudSide:
    """Genesys Cloud posting them instead (the seeded demo Open Messaging channel)."""

    backend = "genesys-cloud"
    path = GENESYS_CLOUD_PATH

    def __init__(self) -> None:
        self.sim = GenesysCloudSandbox(client_id="unused", client_secret="unused")
        self.sim.add_integration(
            DEMO_GENESYS_CLOUD_INTEGRATION, secret_token=DEMO_GENESYS_CLOUD_SECRET_TOKEN
        )

    def signed(self, mid: str, to: str, text: str) -> tuple[bytes, dict[str, str]]:
        document = self.sim.agent_message(DEMO_GENESYS_CLOUD_INTEGRATION, to, text)
        document["id"] = document["channel"]["messageId"] = mid
        return self.sim.signed_webhook(DEMO_GENESYS_CLOUD_INTEGRATION, document)


Side = NexusSide | GenesysCloudSide


def nexus_signer() -> NexusSide:
    return NexusSide()


def side_for(backend: str) -> Side:
    return GenesysCloudSide() if backend == "genesys-cloud" else NexusSide()


def message_id(run: str, conversation: int, sequence: int) -> str:
    return f"drill-{run}c{conversation}-{sequence}"


def customer(conversation: int) -> str:
    return f"+1555{conversation:07d}"


def webhook(
    side: Side, run: str, conversation: int, sequence: int
) -> tuple[str, bytes, dict[str, str]]:
    mid = message_id(run, conversation, sequence)
    body, headers = side.signed(
        mid, customer(conversation), f"message {sequence} of conversation {conversation}"
    )
    return mid, body, headers


@dataclass
class Outcome:
    """What each webhook got back: a status code, or the transport error's class name."""

    results: dict[str, int | str] = field(default_factory=dict)

    def acknowledged(self) -> set[str]:
        return {m for m, r in self.results.items() if isinstance(r, int) and 200 <= r < 300}

    def refused(self) -> set[str]:
        return {m for m, r in self.results.items() if isinstance(r, int) and r >= 300}

    def dropped(self) -> set[str]:
        return {m for m, r in self.results.items() if isinstance(r, str)}

    def statuses(self) -> Counter[int | str]:
        return Counter(self.results.values())


async def post_webhook(
    client: httpx.AsyncClient,
    base_url: str,
    body: bytes,
    headers: dict[str, str],
    path: str = NEXUS_PATH,
) -> int | str:
    try:
        response = await client.post(f"{base_url}{path}", content=body, headers=headers)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return response.status_code


async def send_conversations(
    urls: list[str],
    *,
    run: str,
    conversations: int,
    per_conversation: int,
    outcome: Outcome,
    nexus: Side,
    stop: asyncio.Event | None = None,
    pause_s: float = 0.0,
    redeliveries: int = 0,
) -> None:
    """Each conversation sends its messages one after another (so send order is known);
    conversations run concurrently; successive messages alternate across `urls`."""
    counter = 0
    async with httpx.AsyncClient(
        timeout=10.0, limits=httpx.Limits(max_connections=conversations)
    ) as client:

        async def one(conversation: int) -> None:
            nonlocal counter
            for sequence in range(per_conversation):
                if stop is not None and stop.is_set():
                    return
                mid, body, headers = webhook(nexus, run, conversation, sequence)
                url = urls[counter % len(urls)]
                counter += 1
                result = await post_webhook(client, url, body, headers, nexus.path)
                for _ in range(redeliveries):
                    if not isinstance(result, str):
                        break
                    # Nexus redelivers what got no answer (e.g. a keep-alive connection the
                    # server closed just as it was reused); the bridge's dedupe absorbs it.
                    result = await post_webhook(client, url, body, headers, nexus.path)
                outcome.results[mid] = result
                if pause_s:
                    await asyncio.sleep(pause_s)

        await asyncio.gather(*(one(c) for c in range(conversations)))


async def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval_s)
    return bool(predicate())


def new_run() -> str:
    return uuid.uuid4().hex[:6]
