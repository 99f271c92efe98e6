"""Akixi fixtures: the in-process simulator and a client bound to it with a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from channel_bridge.platforms.akixi.client import AkixiClient, InvokeIdCounter
from channel_bridge.sandbox.akixi import (
    SANDBOX_PASSWORD,
    SANDBOX_USER,
    SEED_PARTITION_GUID,
    AkixiSimulator,
    create_akixi_simulator,
)
from channel_bridge.settings import Settings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "akixi"
AKIXI_URL = "https://akixi.test/CCS/WS"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def akixi_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "dev",
        "sandbox": False,
        "akixi_url": AKIXI_URL,
        "akixi_user": SANDBOX_USER,
        "akixi_password": SANDBOX_PASSWORD,
        "akixi_partition_guid": SEED_PARTITION_GUID,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def simulator_http(simulator: AkixiSimulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_akixi_simulator(simulator)))


@pytest.fixture
def simulator() -> AkixiSimulator:
    return AkixiSimulator(user=SANDBOX_USER, password=SANDBOX_PASSWORD)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def akixi_http(simulator: AkixiSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with simulator_http(simulator) as http:
        yield http


@pytest.fixture
def client(akixi_http: httpx.AsyncClient, clock: FakeClock) -> AkixiClient:
    return AkixiClient(akixi_http, akixi_settings(), clock=clock, invoke_ids=InvokeIdCounter())
