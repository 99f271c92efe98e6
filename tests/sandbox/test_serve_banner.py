"""`channel-bridge serve` in sandbox mode on any port: the banner and the URLs it builds name
that port (not 8080), and uvicorn's JSON log lines carry no escape-coded `color_message`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx

from tests.foundation.test_cli import CONSOLE_SCRIPT, run
from tests.support.postgres import free_port


def test_the_sandbox_banner_names_the_port_served_on(tmp_path: Path) -> None:
    port = free_port()
    env = {"BRIDGE_LOG_FORMAT": "json"}
    assert run(["migrate"], env, tmp_path).returncode == 0
    clean = {
        **env,
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "BRIDGE_SECRETS_DIR": str(tmp_path / "none"),
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=clean,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90  # a loaded CI machine starts slowly
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    banner = next(line for line in lines if line["event"].startswith("SANDBOX MODE"))
    assert banner["webhook"] == f"http://localhost:{port}/nexus/channels/+15550100200/webhook"
    assert "BRIDGE_ADMIN_TOKEN" in banner["event"]
    uvicorn_lines = [line for line in lines if line.get("logger", "").startswith("uvicorn")]
    assert uvicorn_lines, "uvicorn logs through the bridge's JSON renderer"
    assert not [line for line in lines if "color_message" in line]
    assert "\x1b[" not in log_path.read_text()
