"""A sandbox-mode bridge in a subprocess for the hostile-input tests, and its log file.

Sandbox mode (dev, no upstream URLs) runs the real bridge with the AXP, Nexus and Akixi
simulators in-process: every route is live, and its log holds everything the bridge wrote.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from channel_bridge.sandbox import mode
from tests.conftest import TEST_ADMIN_TOKEN, TEST_CALLBACK_TOKEN
from tests.drills.harness import bridge_executable, free_port
from tests.support.postgres import PostgresServer

SECRET_KEY = "hostile-secret-key-71c0de5a9b3f2e4d6c8a"

# Every configured or seeded secret value: none may appear in a log line or a response.
SECRET_VALUES = (
    TEST_ADMIN_TOKEN,
    TEST_CALLBACK_TOKEN,
    SECRET_KEY,
    mode.AXP_CLIENT_SECRET,
    mode.AXP_APP_KEY,
    mode.DEMO_WEBHOOK_SECRET,
    mode.DEMO_API_SECRET,
)


@dataclass
class SandboxBridge:
    url: str
    log_path: Path
    database_url: str
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def sandbox_bridge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxBridge]:
    """The sandbox bridge on each backend: hostile input must be refused the same way on the
    embedded default and on PostgreSQL (whose text and jsonb refuse more than SQLite does)."""
    workdir = tmp_path_factory.mktemp("hostile")
    if request.param == "sqlite":
        database_url = f"sqlite+aiosqlite:///{workdir / 'bridge.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = f"hostile_{uuid.uuid4().hex[:8]}"
        server.janitor(name).init()
        database_url = server.url(name)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(
        {
            "BRIDGE_ENV": "dev",
            "BRIDGE_DATABASE_URL": database_url,
            "BRIDGE_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
            "BRIDGE_AXP_CALLBACK_TOKEN": TEST_CALLBACK_TOKEN,
            "BRIDGE_SECRET_KEY": SECRET_KEY,
            "BRIDGE_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            # DEBUG: the most talkative the bridge gets, so a leak has every chance to show.
            "BRIDGE_LOG_LEVEL": "DEBUG",
            "BRIDGE_LOG_FORMAT": "json",
        }
    )
    subprocess.run([*bridge_executable(), "migrate"], env=env, check=True, capture_output=True)
    log_path = workdir / "bridge.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*bridge_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    bridge = SandboxBridge(f"http://127.0.0.1:{port}", log_path, database_url, process)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"sandbox bridge exited: {bridge.log_text()[-2000:]}")
        try:
            if httpx.get(f"{bridge.url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"sandbox bridge not ready: {bridge.log_text()[-2000:]}")
        time.sleep(0.1)
    try:
        yield bridge
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
