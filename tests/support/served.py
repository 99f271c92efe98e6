"""`channel-bridge serve` as a real process (the console script) on a free loopback port."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.foundation.test_cli import CONSOLE_SCRIPT

# A loaded CI machine starts slowly.
READY_TIMEOUT_S = 90


@contextlib.contextmanager
def serving(cwd: Path, port: int, env: dict[str, str]) -> Iterator[Path]:
    """Serve from `cwd` with only `env` (no ambient secrets or PATH); yields the log file once
    /readyz answers 200, and stops the server on exit."""
    clean = {
        **env,
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
        "BRIDGE_SECRETS_DIR": str(cwd / "none"),
    }
    log_path = cwd / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=clean,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError(log_path.read_text())
        yield log_path
    finally:
        server.terminate()
        server.wait(timeout=30)
