"""The dependency rules of docs/architecture.md ("Layout and dependency rules"), from the source.

Every `import` and `from … import` in src/channel_bridge, including those inside functions
(a lazy import is still a dependency), is resolved to the module it names; the rules are then
checked over the whole graph, together with the absence of import cycles between modules.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "channel_bridge"

# The programs: only these may import the application or the root CLI.
ENTRY_POINTS = {"channel_bridge.__main__", "channel_bridge.cli", "channel_bridge.sandbox.demo"}
PLATFORMS = tuple(
    sorted(p.name for p in (SRC / PACKAGE / "platforms").iterdir() if (p / "__init__.py").exists())
)
VENDOR_AND_WIRING = (
    *(f"channel_bridge.platforms.{name}" for name in PLATFORMS),
    "channel_bridge.bridge",
    "channel_bridge.mappings",
    "channel_bridge.sandbox",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in (SRC / PACKAGE).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str], tree: ast.AST | None = None) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree or ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from package import module` names a module; `from module import name` does not.
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                # The longest known module the name starts with (a name may be an attribute).
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                yield target


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: set(_imports(name, path, known)) - {name} for name, path in modules.items()}


GRAPH = _graph()


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _violations(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _within(module, *sources)
        for target in targets
        if _within(target, *forbidden)
    )


def test_the_graph_is_read() -> None:
    # A broken walk would make every rule below pass vacuously.
    assert {"axp", "nexus", "akixi", "genesys_cloud"} <= set(PLATFORMS)
    assert len(GRAPH) > 50
    assert "channel_bridge.relay.repository" in GRAPH["channel_bridge.relay.worker"]
    nexus_router = GRAPH["channel_bridge.platforms.nexus.router"]
    assert "channel_bridge.platforms.nexus.signing" in nexus_router


def test_the_relay_imports_no_vendor_wiring_or_mapping_code() -> None:
    assert _violations(("channel_bridge.relay",), VENDOR_AND_WIRING) == []


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_platform_never_imports_another(platform: str) -> None:
    others = tuple(f"channel_bridge.platforms.{p}" for p in PLATFORMS if p != platform)
    assert _violations((f"channel_bridge.platforms.{platform}",), others) == []


def test_platforms_and_mappings_never_import_the_wiring_or_the_simulators() -> None:
    sources = (*(f"channel_bridge.platforms.{p}" for p in PLATFORMS), "channel_bridge.mappings")
    assert _violations(sources, ("channel_bridge.bridge", "channel_bridge.sandbox")) == []


def test_mappings_import_no_vendor_code() -> None:
    forbidden = tuple(f"channel_bridge.platforms.{p}" for p in PLATFORMS)
    assert _violations(("channel_bridge.mappings",), forbidden) == []


def test_ops_and_db_import_nothing_above_them() -> None:
    above = (
        "channel_bridge.relay",
        "channel_bridge.mappings",
        "channel_bridge.platforms",
        "channel_bridge.bridge",
        "channel_bridge.sandbox",
        "channel_bridge.app",
    )
    assert _violations(("channel_bridge.ops", "channel_bridge.db"), above) == []


def test_only_the_entry_points_import_the_app_or_the_root_cli() -> None:
    importers = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module not in ENTRY_POINTS
        for target in targets & {"channel_bridge.app", "channel_bridge.cli"}
    )
    assert importers == []


def test_no_import_cycle_between_modules() -> None:
    # Tarjan's strongly connected components over the module graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == []


def test_package_inits_do_not_hide_dependencies() -> None:
    # Rules are checked per module; an __init__ re-exporting across areas would bypass them.
    offenders = defaultdict(set)
    for module, targets in GRAPH.items():
        if _modules()[module].name == "__init__.py":
            for target in targets:
                if not _within(target, module):
                    offenders[module].add(target)
    assert dict(offenders) == {}


def _run_time_imports(module: str) -> set[str]:
    """The module's imports outside `if TYPE_CHECKING:` blocks."""
    path = _modules()[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    tree.body = [
        node
        for node in tree.body
        if not (isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"))
    ]
    return set(_imports(module, path, set(GRAPH), tree)) - {module}


@pytest.mark.parametrize("module", ["channel_bridge.state", "channel_bridge.deps"])
def test_the_state_and_its_dependencies_name_vendor_types_for_the_type_checker_only(
    module: str,
) -> None:
    # The relay's routes import deps, and the relay loads no vendor or wiring code.
    loaded = sorted(t for t in _run_time_imports(module) if _within(t, *VENDOR_AND_WIRING))
    assert loaded == []
