"""Fixtures for the foundation tests: the repository's deployment files and the app's routes."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from channel_bridge.app import create_app
from tests.conftest import make_settings, running_app

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"


@pytest.fixture
def clean_bridge_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No BRIDGE_* variable from the calling shell (or conftest) leaks into Settings()."""
    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def served(tmp_path: Path) -> Callable[..., dict[str, int]]:
    """GET each path from the real app (lifespan running, healthy SQLite); path -> status."""

    def get(*paths: str) -> dict[str, int]:
        async def run() -> dict[str, int]:
            settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}")
            async with running_app(settings) as (_app, client):
                return {path: (await client.get(path)).status_code for path in paths}

        return asyncio.run(run())

    return get


@pytest.fixture(scope="module")
def route_templates(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Path templates of the app's documented routes (webhooks, admin, health)."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('routes') / 'bridge.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate operation ids are not this test's concern
        return set(create_app(make_settings(url)).openapi()["paths"])


def load_k8s() -> dict[str, list[dict[str, Any]]]:
    """Every object in docker/k8s (examples/ included), grouped by kind."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(K8S.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                by_kind.setdefault(document["kind"], []).append(document)
    return by_kind


def one(by_kind: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    objects = by_kind.get(kind, [])
    assert len(objects) == 1, f"expected exactly one {kind} in docker/k8s, found {len(objects)}"
    return objects[0]
