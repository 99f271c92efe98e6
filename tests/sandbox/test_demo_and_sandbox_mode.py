"""Sandbox mode (what `make run` serves on a laptop) and the scripted `channel-bridge demo`."""

from __future__ import annotations

import io

from rich.console import Console
from sqlalchemy import func, select

from channel_bridge.db.models import Channel, Delivery, InboxEvent
from channel_bridge.sandbox import demo
from channel_bridge.sandbox.mode import DEMO_NEXUS_CHANNEL
from channel_bridge.settings import Settings
from tests.conftest import make_settings, running_app


async def test_demo_conversation_crosses_every_hop(tmp_path) -> None:
    hops = await demo.run_demo(Console(file=io.StringIO()), workdir=tmp_path)
    assert [hop.ok for hop in hops] == [True] * 5
    names = [hop.name for hop in hops]
    assert names[0] == "Nexus → bridge webhook" and names[-1] == "AXP agent reply → Nexus message"
    assert "1 attachment" in hops[2].detail


async def test_demo_with_a_genesys_cloud_channel_crosses_every_hop(tmp_path) -> None:
    hops = await demo.run_demo(
        Console(file=io.StringIO()), workdir=tmp_path, backend="genesys-cloud"
    )
    assert [hop.ok for hop in hops] == [True] * 6
    names = [hop.name for hop in hops]
    assert names[0].startswith("Genesys Cloud → bridge webhook")
    assert "AXP agent reply → Genesys Cloud inbound message" in names
    assert names[-1] == "Genesys Cloud agent typing → AXP typing"
    assert "1 attachment" in hops[2].detail


def test_demo_command_exit_code_and_transcript(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert demo.main(Console(file=out, width=120)) == 0
    assert "every hop succeeded" in out.getvalue()


def test_sandbox_mode_only_in_dev_without_upstreams() -> None:
    assert Settings(env="dev", axp_base_url=None, nexus_base_url=None).sandbox_mode
    assert not Settings(env="dev", axp_base_url="https://na.api.avayacloud.com").sandbox_mode
    assert not Settings(env="prod", axp_base_url=None, nexus_base_url=None).sandbox_mode


async def test_sandbox_mode_seeds_demo_channel_and_relays(
    database_url, engine, sessionmaker
) -> None:
    settings = make_settings(database_url, sandbox=None, worker_enabled=False)
    assert settings.sandbox_mode
    async with running_app(settings) as (app, client):
        assert (await client.get("/readyz")).status_code == 200
        async with sessionmaker() as session:
            channel = await session.scalar(
                select(Channel).where(Channel.nexus_channel_id == DEMO_NEXUS_CHANNEL)
            )
            assert channel is not None and channel.enabled
        body, headers = app.state_now.sandbox.nexus.signed_webhook(
            DEMO_NEXUS_CHANNEL, {"id": "m-1", "to": "+15557654321", "text": "hi"}
        )
        response = await client.post(
            f"/nexus/channels/{DEMO_NEXUS_CHANNEL}/webhook", content=body, headers=headers
        )
        assert response.status_code == 200
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 1
            destinations = (await session.scalars(select(Delivery.destination))).all()
        assert destinations == ["axp.send_message"]
