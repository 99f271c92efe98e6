"""Outcome labels of bridge_webhooks_total are snake_case whichever source refused the
request (the Nexus route once used the problem's kebab-case slug, AXP snake_case)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from prometheus_client import REGISTRY

from channel_bridge.db.migrate import upgrade
from tests.conftest import TEST_CALLBACK_TOKEN, make_settings, running_app


def outcomes() -> dict[tuple[str, str], float]:
    return {
        (sample.labels["source"], sample.labels["outcome"]): sample.value
        for metric in REGISTRY.collect()
        if metric.name == "bridge_webhooks"
        for sample in metric.samples
        if sample.name == "bridge_webhooks_total"
    }


def test_refusals_are_counted_with_snake_case_outcomes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    upgrade(url)
    before = outcomes()

    async def refuse() -> None:
        async with running_app(make_settings(url)) as (_app, client):
            for path in (
                "/nexus/channels/+15550100999/webhook",
                f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications",
            ):
                response = await client.post(
                    path, content=b"<xml/>", headers={"Content-Type": "text/xml"}
                )
                assert 400 <= response.status_code < 500, (path, response.status_code)

    asyncio.run(refuse())
    counted = {key for key, value in outcomes().items() if value > before.get(key, 0)}
    assert {source for source, _ in counted} >= {"nexus.webhook", "axp.notification"}, counted
    for source, outcome in counted:
        assert re.fullmatch(r"[a-z_]+", outcome), (source, outcome)
