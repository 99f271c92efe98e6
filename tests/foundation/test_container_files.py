"""docker/Dockerfile, .dockerignore and docker/compose.yaml agree with the app and each other.

Docker is not available on the build machines, so these files are kept correct by reading
them: the health check and ports must hit routes the app serves, the commands must be ones
the CLI accepts, and nothing secret may reach an image layer.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml
from pydantic import SecretStr

from channel_bridge.cli import app as cli_app
from channel_bridge.ops.logging import SENSITIVE_KEY
from channel_bridge.settings import Settings
from tests.foundation.conftest import DOCKER, REPO

SECRET_FIELDS = {
    f"BRIDGE_{name.upper()}"
    for name, info in Settings.model_fields.items()
    if SecretStr in getattr(info.annotation, "__args__", (info.annotation,))
}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages), with comments dropped and continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            parts = [p for p in parts if not p.startswith("--")]
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM, found {keyword}"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def env_pairs(env_args: str) -> dict[str, str]:
    pairs = {}
    for token in env_args.split():
        key, _, value = token.partition("=")
        pairs[key] = value
    return pairs


def cli_accepts(argv: list[str]) -> Any:
    """The click context of argv parsed by the real `channel-bridge` command, not run."""
    group: Any = typer.main.get_command(cli_app)
    name, command, rest = group.resolve_command(
        group.make_context("channel-bridge", list(argv), resilient_parsing=True), argv
    )
    assert command is not None, f"channel-bridge has no command {argv[0]!r}"
    return command.make_context(name or argv[0], list(rest))


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile((DOCKER / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def runtime(dockerfile: tuple[dict[str, str], list[Stage]]) -> Stage:
    return dockerfile[1][-1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


# --- Dockerfile ------------------------------------------------------------------------


def test_multi_stage_on_python_311_slim(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _args, stages = dockerfile
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    assert runtime.base == "python:3.11-slim"
    assert builder.name == "builder"
    # The runtime gets the finished virtualenv, not the build tools or the sources.
    copies = runtime.all("COPY")
    assert any(c.startswith("--from=builder /opt/venv") for c in copies)
    assert not any(re.search(r"(^|\s)(src|tests)(\s|$)", c) for c in copies if "--from" not in c)
    # The builder installs the project with the committed constraints.
    runs = " ".join(builder.all("RUN"))
    assert "-c constraints.txt" in runs and re.search(r"pip install [^&]*\.(\s|$)", runs)


def test_runs_as_a_numeric_non_root_user(runtime: Stage) -> None:
    user = runtime.last("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user} must be a numeric non-root uid"


def test_entrypoint_and_command_are_valid_cli_invocations(runtime: Stage) -> None:
    assert json.loads(runtime.last("ENTRYPOINT")) == ["channel-bridge"]
    command = json.loads(runtime.last("CMD"))
    context = cli_accepts(command)
    assert context.command.name == "serve"
    assert context.params["host"] == "0.0.0.0"
    assert str(context.params["port"]) == runtime.last("EXPOSE").split("/")[0]


def test_healthcheck_hits_the_liveness_route_on_the_served_port(
    runtime: Stage, served: Callable[..., dict[str, int]]
) -> None:
    healthcheck = runtime.last("HEALTHCHECK")
    exec_form = json.loads(healthcheck[healthcheck.index("CMD") + len("CMD") :].strip())
    # Slim images have no curl: the check must use the interpreter that is there.
    assert exec_form[0] == "python"
    url = re.search(r"https?://[^'\"\s]+", " ".join(exec_form))
    assert url, "the HEALTHCHECK must request a URL"
    parts = urlsplit(url.group(0))
    assert parts.path == "/healthz"
    assert served(parts.path) == {"/healthz": 200}
    assert str(parts.port) == runtime.last("EXPOSE").split("/")[0]
    served_port = json.loads(runtime.last("CMD"))
    assert served_port[served_port.index("--port") + 1] == str(parts.port)


def test_migrations_ship_with_the_image(runtime: Stage) -> None:
    env = {}
    for line in runtime.all("ENV"):
        env.update(env_pairs(line))
    workdir = runtime.last("WORKDIR")
    copies = [c.split() for c in runtime.all("COPY") if not c.startswith("--from")]
    copied_to = {src: dest for src, dest in ((c[0], c[-1]) for c in copies)}
    assert env["BRIDGE_ALEMBIC_INI"] == f"{workdir}/alembic.ini"
    assert copied_to["alembic.ini"] in ("./", f"{workdir}/")
    # alembic.ini finds its scripts next to itself (script_location = %(here)s/migrations).
    assert "script_location = %(here)s/migrations" in (REPO / "alembic.ini").read_text()
    assert copied_to["migrations"].rstrip("/") in ("./migrations", f"{workdir}/migrations")


def test_no_secret_is_baked_into_the_image(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, stages = dockerfile
    names = set(global_args)
    for stage in stages:
        for line in stage.all("ENV"):
            names |= set(env_pairs(line))
        for line in stage.all("ARG"):
            names.add(line.partition("=")[0])
    baked = {name for name in names if name in SECRET_FIELDS or SENSITIVE_KEY.search(name)}
    assert not baked, f"secrets must come from the environment at run time, not {baked}"


def test_runtime_dependencies_are_pinned_for_a_reproducible_image() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {
        re.split(r"[=<>!~\[ ]", line)[0].lower().replace("_", "-")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    names = {re.split(r"[=<>!~\[ ;]", dep)[0].lower().replace("_", "-") for dep in dependencies}
    assert names <= pinned, f"not pinned in constraints.txt: {sorted(names - pinned)}"


# --- .dockerignore ------------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").strip("/")))
    return rules


def ignored(path: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a folder covers it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for negated, pattern in rules:
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if matched:
            result = not negated
    return result


def test_every_copied_path_exists_and_is_in_the_build_context(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    rules = dockerignore_rules()
    sources = []
    for stage in dockerfile[1]:
        for line in stage.all("COPY"):
            if line.startswith("--from"):
                continue
            sources += line.split()[:-1]
    assert {"pyproject.toml", "constraints.txt", "src", "alembic.ini", "migrations"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert not ignored(source, rules), f"COPY {source}: excluded by .dockerignore"
    assert not ignored("src/channel_bridge/app.py", rules)
    assert not ignored("migrations/env.py", rules)


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "var/bridge.db",
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "src/channel_bridge/__pycache__/app.cpython-311.pyc",
    ],
)
def test_local_secrets_and_state_never_reach_the_build_context(path: str) -> None:
    assert ignored(path, dockerignore_rules())


# --- compose ----------------------------------------------------------------------------


def test_compose_runs_postgres_15_with_a_volume_and_a_health_check(compose: dict) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:15")
    volume, _, mount = postgres["volumes"][0].partition(":")
    assert mount == "/var/lib/postgresql/data" and volume in compose["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_compose_migrates_once_before_the_bridge_starts(compose: dict, runtime: Stage) -> None:
    services = compose["services"]
    migrate, bridge = services["migrate"], services["bridge"]
    assert cli_accepts(migrate["command"]).command.name == "migrate"
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bridge["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    serve = cli_accepts(bridge["command"])
    assert serve.command.name == "serve"
    container_port = bridge["ports"][0].rsplit(":", 1)[1]
    assert container_port == str(serve.params["port"]) == runtime.last("EXPOSE").split("/")[0]


def test_compose_builds_this_repository_and_reads_the_env_file(compose: dict) -> None:
    for name in ("migrate", "bridge"):
        service = compose["services"][name]
        build = service["build"]
        assert (DOCKER / build["context"]).resolve() == REPO
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
        assert [(DOCKER / path).resolve() for path in service["env_file"]] == [REPO / ".env"]
        # Secrets come from .env only: compose itself holds no BRIDGE_* secret.
        assert not (set(service["environment"]) & SECRET_FIELDS)


def test_compose_database_url_points_at_the_postgres_service(compose: dict) -> None:
    postgres = compose["services"]["postgres"]["environment"]
    raw = compose["services"]["bridge"]["environment"]["BRIDGE_DATABASE_URL"]
    url = re.sub(r"\$\{POSTGRES_PASSWORD[^}]*\}", "s3cr3t-pw", raw)
    parts = urlsplit(url)
    assert parts.hostname == "postgres" and parts.port == 5432
    assert parts.username == postgres["POSTGRES_USER"]
    assert parts.path.lstrip("/") == postgres["POSTGRES_DB"]
    assert "${POSTGRES_PASSWORD" in postgres["POSTGRES_PASSWORD"]
    assert Settings(database_url=url, _env_file=None).database_url.startswith(
        "postgresql+asyncpg://"
    )
