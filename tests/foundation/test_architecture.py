"""The import rules of docs/architecture.md, walked from the source: `bridge/` is the only
place that joins platforms; a platform imports neither another platform nor the wiring."""

from __future__ import annotations

import ast
from pathlib import Path

import channel_bridge

ROOT = Path(channel_bridge.__file__).parent
PLATFORMS = sorted(p.name for p in (ROOT / "platforms").iterdir() if (p / "__init__.py").exists())


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_platforms_are_found() -> None:
    assert {"axp", "nexus", "akixi", "genesys_cloud"} <= set(PLATFORMS)


def test_a_platform_never_imports_another_platform_or_the_wiring() -> None:
    offenders = []
    for platform in PLATFORMS:
        own = f"channel_bridge.platforms.{platform}"
        for path in sorted((ROOT / "platforms" / platform).rglob("*.py")):
            for name in imported_modules(path):
                foreign_platform = name.startswith("channel_bridge.platforms.") and not (
                    name == own or name.startswith(own + ".")
                )
                wiring = name.startswith(("channel_bridge.bridge", "channel_bridge.sandbox"))
                if foreign_platform or wiring:
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []
