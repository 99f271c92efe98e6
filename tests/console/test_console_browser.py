"""The console in headless Chromium against a running bridge and its AXP and Nexus simulators
(the end-to-end stack on loopback), on SQLite and PostgreSQL.

Covers logging in, finding a dead delivery and replaying it, and tracing a conversation hop by
hop. Each page visited passes axe-core with no serious or critical finding; with
BRIDGE_CONSOLE_SCREENSHOTS=docs/console each is saved as a PNG for docs/console.md.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from channel_bridge.db.models import Delivery, MessageLink
from tests.conftest import TEST_ADMIN_TOKEN
from tests.console.browser import Browser, chromium, describe  # noqa: F401 - fixture
from tests.console.conftest import UI
from tests.e2e.conftest import CHANNEL, CUSTOMER, Stack, start_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


def nexus_message(text: str) -> dict[str, Any]:
    return {
        "id": f"nx-{uuid.uuid4().hex[:12]}",
        "channelId": CHANNEL,
        "from": CHANNEL,
        "to": CUSTOMER,
        "text": text,
    }


def accessible(browser: Browser, name: str) -> None:
    """axe-core finds nothing serious on the current page; then its screenshot."""
    blocking = browser.check_accessibility(name)
    assert not blocking, f"{name}: {describe(blocking)}"
    others = browser.findings[name]
    print(f"axe {name}: {len(others)} minor/moderate finding(s) {describe(others)}")
    browser.screenshot(name)


def test_the_accessibility_check_fails_an_inaccessible_page(chromium: Browser) -> None:  # noqa: F811
    """The check is not vacuous: a page with an unlabelled field and an image without alt."""
    chromium.driver.get("data:text/html,<html><body><input type=text><img src=x></body></html>")
    found = {v["id"] for v in chromium.check_accessibility("broken")}
    assert {"image-alt", "label"} <= found


def log_in(browser: Browser) -> None:
    """Fill in the login form the console redirected to."""
    browser.wait_for("form.login")
    browser.find("#token").send_keys(TEST_ADMIN_TOKEN)
    browser.click_button("Log in")


async def deliveries_with(stack: Stack, destination: str, status: str) -> list[Delivery]:
    rows = await stack.deliveries(Delivery.destination == destination)
    return [d for d in rows if d.status == status]


async def test_log_in_find_a_dead_delivery_and_replay_it(
    database_url: str,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    chromium: Browser,  # noqa: F811
) -> None:
    async with start_stack(
        database_url,
        sessionmaker,
        # Two quick retries, then dead; the breaker stays closed for three failures.
        retry_schedule_s=[0.05, 0.05],
        circuit_failure_threshold=50,
    ) as stack:
        browser = chromium
        browser.base_url = stack.bridge_url
        browser.driver.delete_all_cookies()
        stack.axp.faults.error_rate = 1.0
        message = nexus_message("sent while AXP was down")
        assert (await stack.nexus_webhook(message)).status_code == 200
        [dead] = await eventually(
            lambda: deliveries_with(stack, "axp.send_message", "dead"), what="a dead letter"
        )
        assert stack.axp.messages == []
        stack.axp.faults.error_rate = 0.0

        def find_and_replay() -> None:
            # Not logged in: the console sends the browser to its login form, then back.
            browser.open(f"{UI}/deliveries?status=dead")
            browser.wait_for("form.login")
            assert browser.path().startswith(f"{UI}/login?next=")
            accessible(browser, "login")
            log_in(browser)
            browser.wait_for("table.deliveries")
            assert browser.path() == f"{UI}/deliveries?status=dead"
            rows = browser.find_all("table.deliveries tbody tr")
            assert len(rows) == 1 and str(dead.id) in rows[0].text and "dead" in rows[0].text
            accessible(browser, "deliveries")
            browser.find(f'a[href="{UI}/deliveries/{dead.id}"]').click()
            browser.wait_for("#delivery-status")
            assert browser.find("#delivery-status").text == "dead"
            attempts = browser.find_all("table.attempts tbody tr")
            assert len(attempts) == 3 and all("503" in row.text for row in attempts)
            assert "sent while AXP was down" in browser.find("pre.excerpt").text
            accessible(browser, "delivery")
            browser.click_button("Replay")
            browser.wait_for(".notice.ok")
            assert f"Replayed 1 delivery: {dead.id}" in browser.find(".notice.ok").text

        await asyncio.to_thread(find_and_replay)
        await eventually(
            lambda: deliveries_with(stack, "axp.send_message", "delivered"), what="replayed"
        )
        assert [m["providerMessageId"] for m in stack.axp.messages] == [message["id"]]

        def see_it_delivered() -> None:
            browser.open(f"{UI}/deliveries/{dead.id}")
            browser.wait_for("#delivery-status")
            assert browser.find("#delivery-status").text == "delivered"
            outcomes = [row.text for row in browser.find_all("table.attempts tbody tr")]
            assert "delivered" in outcomes[-1]
            # The overview: the destination's row, its charts and the dead letter it had.
            browser.open(UI)
            browser.wait_for("table.overview")
            row = browser.find("table.overview tbody tr:first-child").text
            assert "axp.send_message" in browser.text() and row
            assert browser.find_all("svg.chart rect.bar")
            accessible(browser, "overview")

        await asyncio.to_thread(see_it_delivered)


async def test_trace_a_conversation_hop_by_hop(
    database_url: str,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    chromium: Browser,  # noqa: F811
) -> None:
    async with start_stack(database_url, sessionmaker) as stack:
        browser = chromium
        browser.base_url = stack.bridge_url
        browser.driver.delete_all_cookies()
        assert (await stack.nexus_webhook(nexus_message("Where is my parcel?"))).status_code == 200
        # The simulated agent answers; AXP reports the customer's message delivered.
        [call] = await eventually(lambda: stack.nexus.calls("message"), what="agent reply")

        async def link_status(direction: str) -> str | None:
            links = await stack.links(MessageLink.direction == direction)
            return links[0].status if links else None

        await eventually(lambda: _is(link_status("nexus_to_axp"), "delivered"), what="AXP receipt")
        await eventually(lambda: _is(link_status("axp_to_nexus"), "sent"), what="reply sent")
        # Nexus reports the agent's reply delivered to the customer.
        receipt = {"messageId": call.document["id"], "status": "delivered"}
        assert (await stack.nexus_webhook(receipt)).status_code == 200
        await eventually(
            lambda: _is(link_status("axp_to_nexus"), "delivered"), what="Nexus receipt"
        )
        await stack.axp.wait_idle()
        [conversation] = await stack.conversations()

        def trace() -> None:
            browser.open(f"{UI}/conversations")
            log_in(browser)
            browser.wait_for("form.filters")
            browser.find("#c-customer").send_keys(CUSTOMER)
            browser.click_button("Find")
            browser.wait_for(f'a[href="{UI}/conversations/{conversation.id}"]')
            accessible(browser, "conversations")
            browser.find(f'a[href="{UI}/conversations/{conversation.id}"]').click()
            browser.wait_for("ol.trace")
            messages = browser.find_all("ol.trace > li.message")
            assert len(messages) == 2
            first, second = (m.text for m in messages)
            assert "Genesys → AXP" in first and "Where is my parcel?" in first
            for hop in (
                "accepted from Nexus: done",
                "delivered to AXP: done",
                "receipt from AXP: done",
            ):
                assert hop in first, (hop, first)
            assert "AXP agent → Genesys" in second
            assert "Agent reply to: Where is my parcel?" in second
            for hop in (
                "agent reply from AXP: done",
                "delivered to Nexus: done",
                "receipt from Nexus: done",
            ):
                assert hop in second, (hop, second)
            accessible(browser, "conversation")
            # Its deliveries, filtered by conversation from the trace's link.
            browser.find(f'a[href="{UI}/deliveries?conversation={conversation.id}"]').click()
            browser.wait_for("table.deliveries")
            listed = browser.find("table.deliveries").text
            assert "axp.send_message" in listed and "nexus.send_message" in listed
            browser.open(f"{UI}/channels")
            browser.wait_for("table.channels")
            assert f"/nexus/channels/{CHANNEL}/webhook" in browser.text()
            accessible(browser, "channels")

        await asyncio.to_thread(trace)


async def _is(value: Any, expected: str) -> bool:
    return (await value) == expected
