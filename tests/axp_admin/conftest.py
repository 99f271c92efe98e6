"""AXP admin tests: respx at the HTTP edge, a controllable clock, the real CLI through CliRunner."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import httpx
import pytest
import respx
from typer.testing import CliRunner, Result

from channel_bridge import cli as root_cli
from channel_bridge.platforms.axp import admin_cli
from channel_bridge.platforms.axp.admin import AxpAdmin, PollPolicy
from tests.conftest import FIXTURES

BASE_URL = "https://na.api.avayacloud.com"
ACCOUNT = "ABCDEF"
VOICE = f"{BASE_URL}/api/admin/voice/v1/accounts/{ACCOUNT}"
INVENTORY = f"{BASE_URL}/api/admin/inventory/v1/accounts/{ACCOUNT}"
# Small pages so paging is exercised with few fixtures (the inventory minimum is 5).
PAGE_SIZE = 5
# 1, 2, 4, 8, 8, ... seconds; the deadline is generous unless a test narrows it.
POLL = PollPolicy(timeout_s=120.0, initial_interval_s=1.0, max_interval_s=8.0)


@cache
def _fixture_file(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "axp_admin" / f"{name}.json").read_text())


def example(spec: str, name: str, **changes: Any) -> dict[str, Any]:
    """A spec example (see tests/fixtures/axp_admin/README.md), optionally with fields changed."""
    value = copy.deepcopy(_fixture_file(spec)["examples"][name])
    value.update(changes)
    return value


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def axp() -> Iterator[respx.MockRouter]:
    """The AXP edge. Any request no route matches fails the test (respx raises)."""
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router


def build_admin(http: httpx.AsyncClient, clock: FakeClock) -> AxpAdmin:
    return AxpAdmin(http, ACCOUNT, poll=POLL, page_size=PAGE_SIZE, clock=clock, sleep=clock.sleep)


@pytest.fixture
async def admin(axp: respx.MockRouter, clock: FakeClock) -> AsyncIterator[AxpAdmin]:
    async with httpx.AsyncClient(base_url=BASE_URL) as http:
        yield build_admin(http, clock)


Invoke = Callable[..., Result]


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, axp: respx.MockRouter, clock: FakeClock) -> Invoke:
    """`channel-bridge axp …` through the root app, its AxpAdmin over the mocked edge."""

    @asynccontextmanager
    async def open_admin() -> AsyncIterator[AxpAdmin]:
        async with httpx.AsyncClient(base_url=BASE_URL) as http:
            yield build_admin(http, clock)

    monkeypatch.setattr(admin_cli, "open_admin", open_admin)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(root_cli.app, ["axp", *args], input=input)

    return invoke


def body_of(call: respx.models.Call) -> Any:
    return json.loads(call.request.content)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    return lines[0]
