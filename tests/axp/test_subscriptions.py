"""ensure_subscription converges with the fewest calls; reconcile heals at start-up."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from channel_bridge.app import create_app
from channel_bridge.db.models import Channel, Integration
from channel_bridge.platforms.axp.destinations import AxpDestination
from channel_bridge.platforms.axp.platform import AxpPlatform
from channel_bridge.platforms.axp.subscriptions import (
    callback_url_for,
    owned_prefix,
    reconcile_once,
)
from channel_bridge.relay.errors import PermanentError
from channel_bridge.sandbox.axp import AxpSimulator
from tests.axp.conftest import (
    ACCOUNT_ID,
    axp_settings,
    load_fixture,
    make_simulator,
    validate_against,
)
from tests.conftest import TEST_CALLBACK_TOKEN
from tests.support.destinations import call_destination

OURS = callback_url_for("https://bridge.example.com", TEST_CALLBACK_TOKEN)
OLD_TOKEN_URL = callback_url_for(
    "https://bridge.example.com", "an-older-rotated-callback-token-000000"
)
SOMEONE_ELSE = "https://other-connector.example.com/callback"
WANTED = ["MESSAGES", "PARTICIPANT_DISCONNECTED", "TYPING"]
PROVIDER = "591c2529-c3a3-4062-a213-b239c18f543b"
SUBS = f"/api/digital/webhook/v1/accounts/{ACCOUNT_ID}/subscriptions"


def calls(sim: AxpSimulator) -> list[tuple[str, str]]:
    return [(r.method, r.path.removeprefix(SUBS) or "/") for r in sim.recorded()]


def check_bodies(sim: AxpSimulator) -> None:
    for recorded in sim.recorded():
        if recorded.method in ("POST", "PUT"):
            validate_against("subscription.schema.json", recorded.json)


def test_callback_url_carries_the_token() -> None:
    assert OURS == f"https://bridge.example.com/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications"
    assert owned_prefix(OURS) == "https://bridge.example.com/axp/callbacks/"


async def test_from_nothing_one_list_and_one_create(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    created = await platform.subscriptions.ensure_subscription(PROVIDER, OURS, WANTED)
    assert calls(sim) == [("GET", "/"), ("POST", "/")]
    assert sim.recorded()[0].query == {"channelProviderId": [PROVIDER]}
    assert sim.recorded()[1].json == {
        "channelProviderId": PROVIDER,
        "callbackUrl": OURS,
        "eventTypes": WANTED,
    }
    check_bodies(sim)
    assert list(sim.subscriptions.values()) == [created.model_dump()]


async def test_wrong_event_types_one_list_and_one_put(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    existing = sim.add_subscription(PROVIDER, OURS, ["MESSAGES"])
    kept = await platform.subscriptions.ensure_subscription(PROVIDER, OURS, WANTED)
    assert calls(sim) == [("GET", "/"), ("PUT", f"/{existing['subscriptionId']}")]
    assert sim.recorded()[1].json == {
        "subscriptionId": existing["subscriptionId"],
        "channelProviderId": PROVIDER,
        "callbackUrl": OURS,
        "eventTypes": WANTED,
    }
    check_bodies(sim)
    assert kept.subscriptionId == existing["subscriptionId"]
    assert sim.subscriptions[existing["subscriptionId"]]["eventTypes"] == WANTED


async def test_two_duplicates_one_list_and_one_delete(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    first = sim.add_subscription(PROVIDER, OURS, list(reversed(WANTED)))
    second = sim.add_subscription(PROVIDER, OURS, WANTED)
    other = sim.add_subscription(PROVIDER, SOMEONE_ELSE, ["ALL"])
    kept = await platform.subscriptions.ensure_subscription(PROVIDER, OURS, WANTED)
    assert calls(sim) == [("GET", "/"), ("DELETE", f"/{second['subscriptionId']}")]
    assert kept.subscriptionId == first["subscriptionId"]  # order of eventTypes does not matter
    assert set(sim.subscriptions) == {first["subscriptionId"], other["subscriptionId"]}


async def test_a_duplicate_with_wrong_types_is_deleted_not_updated(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    wrong = sim.add_subscription(PROVIDER, OURS, ["ALL"])
    right = sim.add_subscription(PROVIDER, OURS, WANTED)
    await platform.subscriptions.ensure_subscription(PROVIDER, OURS, WANTED)
    assert calls(sim) == [("GET", "/"), ("DELETE", f"/{wrong['subscriptionId']}")]
    assert set(sim.subscriptions) == {right["subscriptionId"]}


async def test_an_old_callback_token_is_moved_by_put_and_strangers_are_untouched(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    stale = sim.add_subscription(PROVIDER, OLD_TOKEN_URL, WANTED)
    stranger = sim.add_subscription(PROVIDER, SOMEONE_ELSE, ["MESSAGES"])
    await platform.subscriptions.ensure_subscription(PROVIDER, OURS, WANTED)
    assert calls(sim) == [("GET", "/"), ("PUT", f"/{stale['subscriptionId']}")]
    assert sim.subscriptions[stale["subscriptionId"]]["callbackUrl"] == OURS
    assert sim.subscriptions[stranger["subscriptionId"]]["callbackUrl"] == SOMEONE_ELSE


async def test_converged_state_costs_one_list(platform: AxpPlatform, sim: AxpSimulator) -> None:
    sim.add_subscription(PROVIDER, OURS, WANTED)
    await platform.subscriptions.ensure_subscription(PROVIDER, OURS, WANTED)
    assert calls(sim) == [("GET", "/")]


async def test_crud_against_the_spec_examples(platform: AxpPlatform, sim: AxpSimulator) -> None:
    example = load_fixture("subscription_examples.json")["CreateSubscriptionRequest"]
    created = await platform.subscriptions.create(
        channel_provider_id=example["channelProviderId"],
        callback_url=example["callbackUrl"],
        event_types=example["eventTypes"],
    )
    assert sim.recorded()[0].json == example
    assert (await platform.subscriptions.get(created.subscriptionId)).callbackUrl == example[
        "callbackUrl"
    ]
    await platform.subscriptions.delete(created.subscriptionId)
    assert sim.subscriptions == {}
    with pytest.raises(PermanentError) as caught:
        await platform.subscriptions.get(created.subscriptionId)
    assert caught.value.http_status == 404


async def test_subscription_ensure_destination(platform: AxpPlatform, sim: AxpSimulator) -> None:
    from channel_bridge.platforms.axp.subscriptions import subscription_destination

    destination = subscription_destination(
        platform.subscriptions, callback_url=OURS, event_types=WANTED
    )
    result = await call_destination(destination, {"channel_provider_id": PROVIDER}, delivery_id=7)
    assert result == {
        "subscriptionId": next(iter(sim.subscriptions)),
        "channelProviderId": PROVIDER,
    }
    with pytest.raises(PermanentError):
        await call_destination(destination, {}, delivery_id=8)


async def test_reconcile_keeps_going_after_one_provider_fails(
    platform: AxpPlatform, sim: AxpSimulator
) -> None:
    sim.faults.fail_next = [500]

    async def providers() -> list[str]:
        return ["provider-a", "provider-b"]

    outcomes = await reconcile_once(
        platform.subscriptions, provider_ids=providers, callback_url=OURS, event_types=WANTED
    )
    assert outcomes == {"provider-a": "failed", "provider-b": "ok"}
    assert [s["channelProviderId"] for s in sim.subscriptions.values()] == ["provider-b"]


async def test_app_start_up_reconciles_every_known_provider(
    database_url: str, sessionmaker
) -> None:
    async with sessionmaker() as session, session.begin():
        session.add_all(
            [
                Integration(
                    integration_id="int-1",
                    account_id=ACCOUNT_ID,
                    channel_provider_id="provider-int",
                    status="active",
                ),
                Integration(
                    integration_id="int-2",
                    account_id=ACCOUNT_ID,
                    channel_provider_id="provider-gone",
                    status="deleted",
                ),
                Integration(
                    integration_id="int-3",
                    account_id="OTHERS",
                    channel_provider_id="provider-other",
                    status="active",
                ),
            ]
        )
        await session.flush()
        session.add(
            Channel(
                nexus_channel_id="nexus-1",
                axp_account_id=ACCOUNT_ID,
                axp_channel_provider_id="provider-chan",
                axp_integration_id="int-1",
            )
        )
    sim = make_simulator()
    settings = axp_settings(
        database_url,
        axp_subscription_reconcile_enabled=True,
        axp_callback_token=TEST_CALLBACK_TOKEN,
    )
    app = create_app(settings)
    app.axp_transport = httpx.ASGITransport(app=sim.app)
    async with app.router.lifespan_context(app):
        assert isinstance(app.state_now.axp, AxpPlatform)
        assert AxpDestination.SUBSCRIPTION_ENSURE in app.state_now.destinations.names()
        for _ in range(500):
            if len(sim.subscriptions) == 2:
                break
            await asyncio.sleep(0.01)
    assert sorted(
        (s["channelProviderId"], s["callbackUrl"]) for s in sim.subscriptions.values()
    ) == [
        ("provider-chan", OURS.replace("https://bridge.example.com", settings.public_base_url)),
        ("provider-int", OURS.replace("https://bridge.example.com", settings.public_base_url)),
    ]
    assert all(
        s["eventTypes"] == sorted(settings.axp_subscription_event_types)
        for s in sim.subscriptions.values()
    )


async def test_app_without_axp_settings_has_no_platform(settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert app.state_now.axp is None
        assert AxpDestination.SUBSCRIPTION_ENSURE not in app.state_now.destinations.names()
