"""Every `channel-bridge …` command the docs tell an operator to run exists, with its options."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main

from channel_bridge.cli import app as cli_app
from tests.foundation.conftest import REPO

DOCS = [REPO / "docs" / "operations.md", REPO / "docs" / "architecture.md"]
INVOCATION = re.compile(r"channel-bridge((?:[ \t]+[a-z][a-z-]*)+)([^#\n]*)")


def code_in(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where the docs write commands."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def invocations() -> list[tuple[str, list[str], str]]:
    found = []
    for path in DOCS:
        for code in code_in(path.read_text()):
            for match in INVOCATION.finditer(code):
                found.append((path.name, match.group(1).split(), match.group(2)))
    return found


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The deepest command the words name, and the words left over (arguments)."""
    command: Any = typer.main.get_command(cli_app)
    path = []
    for index, word in enumerate(words):
        subcommands = getattr(command, "commands", None)
        if not subcommands or word not in subcommands:
            return command, words[index:]
        command = subcommands[word]
        path.append(word)
    return command, []


@pytest.mark.parametrize(
    ("doc", "words", "rest"),
    invocations(),
    ids=lambda v: " ".join(v) if isinstance(v, list) else " ".join(str(v).split())[:40],
)
def test_documented_command_exists(doc: str, words: list[str], rest: str) -> None:
    command, _arguments = resolve(words)
    shown = f"{doc}: `channel-bridge {' '.join(words)}`"
    if hasattr(command, "commands"):
        # A group is only named as such: `channel-bridge channels …`.
        assert rest.strip().startswith("…"), f"{shown} is a group, not a command"
        return
    options = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest)
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [option for option in options if option not in known | {"--help"}]
    assert not unknown, f"{shown} has no {unknown}"


def test_the_runbook_covers_the_operator_commands() -> None:
    documented = {" ".join(words[:2]) for _doc, words, _rest in invocations()}
    for needed in (
        "deliveries list",
        "deliveries replay",
        "deliveries cancel",
        "migrate",
        "check-config",
        "channels update",
        "nexus provision",
    ):
        assert any(d.startswith(needed) for d in documented), needed
