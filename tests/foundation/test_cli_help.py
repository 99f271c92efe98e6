"""CLI help at the process boundary: a flag takes no value, so it shows no `<bool>` type;
options that take a value still show theirs."""

from __future__ import annotations

from pathlib import Path

from tests.foundation.test_cli import run


def test_flags_show_no_bool_metavar(tmp_path: Path) -> None:
    for command in (["nexus", "provision"], ["channels", "update"], ["deliveries", "replay"]):
        result = run([*command, "--help"], {"COLUMNS": "120"}, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "<bool>" not in result.stdout, command
        assert "--help" in result.stdout
    replay = run(["deliveries", "replay", "--help"], {"COLUMNS": "120"}, tmp_path).stdout
    assert "--force" in replay and "<datetime>" in replay
