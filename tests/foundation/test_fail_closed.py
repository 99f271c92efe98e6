"""Fail closed: the dev secrets published in settings.py are refused as soon as the bridge is
reachable (a non-loopback bind) or talks to a real upstream; prod requires https upstreams;
`serve` and `make run` bind loopback unless told otherwise."""

from __future__ import annotations

import re
import secrets
import subprocess

import pytest
import typer.main

from channel_bridge.app import create_app
from channel_bridge.cli import app as cli_app
from channel_bridge.settings import (
    DEV_DEFAULT_SECRETS,
    UPSTREAM_URL_SETTINGS,
    ConfigError,
    Settings,
    is_loopback_host,
)
from tests.foundation.conftest import DOCKER, REPO
from tests.foundation.test_cli import run
from tests.foundation.test_settings import prod
from tests.support.postgres import free_port

REAL_URLS = {
    "axp_base_url": "https://na.api.avayacloud.com",
    "nexus_base_url": "https://api.mypurecloud.com",
    "akixi_url": "https://reporting.akixi.com/CCS/Service",
}


def dev(**values: object) -> Settings:
    return Settings(_env_file=None, _secrets_dir=None, **values)  # type: ignore[arg-type]


def real_secrets() -> dict[str, str]:
    return {name: secrets.token_urlsafe(36) for name in DEV_DEFAULT_SECRETS}


@pytest.fixture(autouse=True)
def _no_outside_settings(clean_bridge_env, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", UPSTREAM_URL_SETTINGS)
def test_dev_defaults_are_refused_once_a_real_upstream_is_configured(name: str) -> None:
    settings = dev(**{name: REAL_URLS[name]})
    problems = settings.problems()
    assert [p.split(" ", 1)[0] for p in problems] == [
        f"BRIDGE_{secret.upper()}" for secret in DEV_DEFAULT_SECRETS
    ]
    assert all(f"BRIDGE_{name.upper()} names a real upstream" in p for p in problems)
    with pytest.raises(ConfigError):
        create_app(settings)
    # Real secrets with the same upstream: usable.
    assert dev(**{name: REAL_URLS[name]}, **real_secrets()).problems() == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000", "http://localhost:9000/api", "http://[::1]:9000"]
)
def test_dev_defaults_stay_usable_with_upstreams_on_loopback(url: str) -> None:
    assert dev(axp_base_url=url, nexus_base_url=url, akixi_url=url).problems() == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "bridge.internal"])
def test_dev_defaults_are_refused_on_a_non_loopback_bind(host: str) -> None:
    problems = dev().problems(bind_host=host)
    assert len(problems) == len(DEV_DEFAULT_SECRETS)
    assert all(f"the bridge binds {host}, not loopback" in p for p in problems)
    assert dev(**real_secrets()).problems(bind_host=host) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", None])
def test_dev_defaults_are_usable_on_loopback_in_sandbox_mode(host: str | None) -> None:
    settings = dev()
    assert settings.sandbox_mode and settings.problems(bind_host=host) == []


def test_is_loopback_host() -> None:
    assert all(map(is_loopback_host, ["127.0.0.1", "::1", "[::1]", "LOCALHOST", "a.localhost"]))
    assert not any(map(is_loopback_host, ["", None, "0.0.0.0", "::", "localhost.evil.com"]))


@pytest.mark.parametrize("name", UPSTREAM_URL_SETTINGS)
def test_prod_requires_https_upstreams(name: str) -> None:
    assert prod(**{name: REAL_URLS[name]}).problems() == []
    plain = REAL_URLS[name].replace("https://", "http://")
    assert prod(**{name: plain}).problems() == [
        f"BRIDGE_{name.upper()} must be an https:// URL when BRIDGE_ENV=prod"
    ]


def test_serve_binds_loopback_by_default_and_the_makefile_too() -> None:
    command = typer.main.get_command(cli_app)
    serve = command.commands["serve"]  # type: ignore[attr-defined]
    [host] = [p for p in serve.params if p.name == "host"]
    assert host.default == "127.0.0.1"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^HOST \?= 127\.0\.0\.1$", makefile, re.MULTILINE)
    dry = subprocess.run(
        ["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "serve --host 127.0.0.1 --port 8080" in dry.stdout


def test_compose_publishes_the_bridge_on_loopback_only() -> None:
    import yaml

    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert compose["services"]["bridge"]["ports"] == ["127.0.0.1:8080:8080"]


def test_serve_on_every_interface_with_the_dev_defaults_exits_before_starting(tmp_path) -> None:
    port = str(free_port())
    result = run(["serve", "--host", "0.0.0.0", "--port", port], {"BRIDGE_ENV": "dev"}, tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: BRIDGE_ADMIN_TOKEN holds a placeholder value")
    assert "Uvicorn running" not in result.stderr + result.stdout
    assert "dev-admin-token" not in result.stderr + result.stdout
