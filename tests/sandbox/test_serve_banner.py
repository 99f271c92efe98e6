"""`channel-bridge serve` in sandbox mode on any port: the banner and the URLs it builds name
that port (not 8080), and uvicorn's JSON log lines carry no escape-coded `color_message`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.foundation.test_cli import run
from tests.support.postgres import free_port
from tests.support.served import serving


def test_the_sandbox_banner_names_the_port_served_on(tmp_path: Path) -> None:
    port = free_port()
    env = {"BRIDGE_LOG_FORMAT": "json"}
    assert run(["migrate"], env, tmp_path).returncode == 0
    with serving(tmp_path, port, env) as log_path:
        pass
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    banner = next(line for line in lines if line["event"].startswith("SANDBOX MODE"))
    assert banner["webhook"] == f"http://localhost:{port}/nexus/channels/+15550100200/webhook"
    assert "BRIDGE_ADMIN_TOKEN" in banner["event"]
    uvicorn_lines = [line for line in lines if line.get("logger", "").startswith("uvicorn")]
    assert uvicorn_lines, "uvicorn logs through the bridge's JSON renderer"
    assert not [line for line in lines if "color_message" in line]
    assert "\x1b[" not in log_path.read_text()
