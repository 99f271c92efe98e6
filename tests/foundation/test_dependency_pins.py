"""constraints.txt pins every package `make install` installs, each with the sha256 of its
release files, and the Makefile installs it in hash-checking mode."""

from __future__ import annotations

import re
import tomllib

from tests.foundation.conftest import REPO

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s\\;]+)")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, list[str]]:
    """name -> its hashes, from constraints.txt's `name==version \\ --hash=...` entries."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for line in (REPO / "constraints.txt").read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = normal(match["name"])
            found[current] = []
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            digest = line.strip().removeprefix("--hash=sha256:").rstrip(" \\")
            assert re.fullmatch(r"[0-9a-f]{64}", digest), line
            found[current].append(digest)
        elif line.strip() and not line.startswith("#"):
            raise AssertionError(f"unexpected line in constraints.txt: {line!r}")
    return found


def test_every_pin_carries_hashes() -> None:
    pinned = pins()
    assert len(pinned) > 50
    assert not [name for name, hashes in pinned.items() if not hashes]


def test_every_declared_dependency_is_pinned() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    names = {normal(re.split(r"[=<>!~\[ ;]", dep)[0]) for dep in declared}
    assert names <= set(pins()), sorted(names - set(pins()))


def test_make_install_checks_the_hashes_and_adds_only_the_project() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r constraints.txt" in makefile
    assert "pip install --quiet --no-deps -e ." in makefile
    assert "-c constraints.txt -e" not in makefile
