"""`channel-bridge serve` hands uvicorn its process count and the C loop and parser."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from channel_bridge import cli


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, Any]:
    calls: dict[str, Any] = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRIDGE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}")

    async def database_ok(_settings: Any) -> None:
        return None

    monkeypatch.setattr(cli, "check_database", database_ok)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.update(kwargs))
    return calls


def test_serve_runs_one_process_on_uvloop_and_httptools_by_default(served) -> None:
    result = CliRunner().invoke(cli.app, ["serve", "--port", "8099"])
    assert result.exit_code == 0, result.output
    assert served["workers"] == 1
    assert served["loop"] == "uvloop"
    assert served["http"] == "httptools"


def test_serve_workers_come_from_the_setting_unless_the_flag_names_them(
    served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_SERVE_WORKERS", "2")
    assert CliRunner().invoke(cli.app, ["serve"]).exit_code == 0
    assert served["workers"] == 2
    assert CliRunner().invoke(cli.app, ["serve", "--workers", "3"]).exit_code == 0
    assert served["workers"] == 3
