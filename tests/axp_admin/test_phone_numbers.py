"""Phone numbers: add polls INPROGRESS to a final status, safe update, release, available."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from channel_bridge.platforms.axp.admin import AxpAdmin
from channel_bridge.platforms.axp.admin_schemas import AvailableNumberQuery, NewPhoneNumber
from tests.axp_admin.conftest import VOICE, FakeClock, Invoke, body_of, example, one_line

NUMBER_ID = "c8c2909d-75e9-484a-94c0-b7e8d29771fe"  # phoneNumberId of every spec example
VERIFICATION = (
    "Verification needed. Please send the necessary documents to "
    "siptrunksupport@avaya.com to activate it."
)

FINAL_EXAMPLES = {
    "ACTIVE": "PhoneNumberActiveResponse",
    "INACTIVE": "PhoneNumberInActiveResponse",
    "DISABLED": "PhoneNumberDisabledResponse",
    "FAILED": "PhoneNumberFailedResponse",
}


def number(name: str, **changes: object) -> dict:
    return example("phone-numbers", name, **changes)


def in_progress() -> httpx.Response:
    return httpx.Response(200, json=number("PhoneNumberInProgressResponse"))


ADD_ARGS = [
    "+16479308804",
    "--country",
    "US",
    "--display-name",
    "private Number",
    "--calling-party",
]


@pytest.mark.parametrize(
    ("final", "exit_code", "words"),
    [
        ("ACTIVE", 0, ["ACTIVE"]),
        ("INACTIVE", 4, ["INACTIVE", "verification needed", VERIFICATION, "documents"]),
        ("DISABLED", 1, ["DISABLED", "AXP gave no statusMessage"]),
        ("FAILED", 1, ["FAILED", "Internal Server Error"]),
    ],
)
def test_add_polls_inprogress_to_each_final_status(
    run_cli: Invoke,
    axp: respx.MockRouter,
    clock: FakeClock,
    final: str,
    exit_code: int,
    words: list[str],
) -> None:
    added = axp.post(f"{VOICE}/phone-numbers").respond(
        202, json=number("PhoneNumberInProgressResponse")
    )
    polled = axp.get(f"{VOICE}/phone-numbers/{NUMBER_ID}").mock(
        side_effect=[
            in_progress(),
            in_progress(),
            httpx.Response(200, json=number(FINAL_EXAMPLES[final])),
        ]
    )

    result = run_cli("numbers", "add", *ADD_ARGS)

    assert result.exit_code == exit_code, result.output
    assert body_of(added.calls.last) == number("PhoneNumberRequest")
    assert polled.call_count == 3 and clock.sleeps == [1.0, 2.0, 4.0]
    text = result.stdout if exit_code == 0 else one_line(result.stderr)
    assert "+16479308804" in text and NUMBER_ID in text
    for word in words:
        assert word in text


def test_add_stops_at_the_timeout(run_cli: Invoke, axp: respx.MockRouter, clock: FakeClock) -> None:
    axp.post(f"{VOICE}/phone-numbers").respond(202, json=number("PhoneNumberInProgressResponse"))
    axp.get(f"{VOICE}/phone-numbers/{NUMBER_ID}").mock(return_value=in_progress())

    result = run_cli("numbers", "add", *ADD_ARGS, "--timeout", "20")

    assert result.exit_code == 5
    assert sum(clock.sleeps) == 20
    line = one_line(result.stderr)
    assert "gave up waiting for phone number" in line and "last status INPROGRESS" in line


def test_add_without_an_id_in_the_answer_is_an_error(
    run_cli: Invoke, axp: respx.MockRouter
) -> None:
    answer = number("PhoneNumberInProgressResponse")
    del answer["phoneNumberId"]
    axp.post(f"{VOICE}/phone-numbers").respond(202, json=answer)

    result = run_cli("numbers", "add", *ADD_ARGS)

    assert result.exit_code == 3 and "no phoneNumberId" in one_line(result.stderr)


def test_update_sends_every_updatable_field_plus_the_change(
    run_cli: Invoke, axp: respx.MockRouter
) -> None:
    axp.get(f"{VOICE}/phone-numbers/{NUMBER_ID}").mock(
        side_effect=[
            httpx.Response(200, json=number("PhoneNumberActiveResponse")),
            httpx.Response(200, json=number("PhoneNumberActiveResponse", displayName="Sales line")),
        ]
    )
    replaced = axp.put(f"{VOICE}/phone-numbers/{NUMBER_ID}").respond(
        202, json=number("PhoneNumberUpdateResponse", status="INPROGRESS")
    )

    result = run_cli("numbers", "update", NUMBER_ID, "--display-name", "Sales line")

    assert result.exit_code == 0, result.output
    # UpdatePhoneNumber is a full replacement: the unchanged fields go back as they were.
    assert body_of(replaced.calls.last) == {
        "displayName": "Sales line",
        "isCallingPartyNumber": True,
        "preferredMediaLocation": "US-LA",
    }


def test_update_ending_inactive_is_the_verification_outcome(
    run_cli: Invoke, axp: respx.MockRouter
) -> None:
    axp.get(f"{VOICE}/phone-numbers/{NUMBER_ID}").mock(
        side_effect=[
            httpx.Response(200, json=number("PhoneNumberInActiveResponse")),
            httpx.Response(200, json=number("PhoneNumberUpdateResponse")),
        ]
    )
    replaced = axp.put(f"{VOICE}/phone-numbers/{NUMBER_ID}").respond(
        202, json=number("PhoneNumberUpdateResponse")
    )

    result = run_cli("numbers", "update", NUMBER_ID, "--no-calling-party")

    assert result.exit_code == 4
    assert body_of(replaced.calls.last) == {
        "displayName": "private Number",
        "isCallingPartyNumber": False,
        "preferredMediaLocation": "US-LA",
    }
    assert VERIFICATION in one_line(result.stderr)


def test_release_asks_first(run_cli: Invoke, axp: respx.MockRouter) -> None:
    axp.get(f"{VOICE}/phone-numbers/{NUMBER_ID}").respond(
        200, json=number("PhoneNumberActiveResponse")
    )
    released = axp.delete(f"{VOICE}/phone-numbers/{NUMBER_ID}").respond(204)

    declined = run_cli("numbers", "release", NUMBER_ID, input="n\n")
    assert declined.exit_code == 1 and not released.called
    assert "+16479308804" in declined.output and "nothing was released" in declined.stderr

    confirmed = run_cli("numbers", "release", NUMBER_ID, input="y\n")
    assert confirmed.exit_code == 0 and released.call_count == 1


def test_release_with_yes_sends_only_the_delete(run_cli: Invoke, axp: respx.MockRouter) -> None:
    released = axp.delete(f"{VOICE}/phone-numbers/{NUMBER_ID}").respond(204)

    result = run_cli("numbers", "release", NUMBER_ID, "--yes")

    assert result.exit_code == 0 and f"released {NUMBER_ID}" in result.stdout
    assert axp.calls.call_count == 1 and released.call_count == 1


def _page(example_name: str, spec: str, items: list[dict], page: int, total: int) -> dict:
    body = example(spec, example_name)
    body["phoneNumbers"] = items
    body["pagination"] = {"pageNumber": page, "pageSize": 5, "total": total}
    return body


def test_list_first_page_and_filter_in_query(run_cli: Invoke, axp: respx.MockRouter) -> None:
    listed = axp.get(f"{VOICE}/phone-numbers").respond(200, json=number("PhoneNumberPage"))

    result = run_cli(
        "numbers", "list", "--filter", "countryCode:US", "--order-by", "phoneNumber desc"
    )

    assert result.exit_code == 0, result.output
    params = listed.calls.last.request.url.params
    assert params["filter"] == "countryCode:US" and params["orderBy"] == "phoneNumber desc"
    assert params["pageNumber"] == "1" and listed.call_count == 1
    assert NUMBER_ID in result.stdout and "INACTIVE" in result.stdout
    assert "showing 1 of 45 numbers" in result.stderr


def test_list_all_walks_every_page(run_cli: Invoke, axp: respx.MockRouter) -> None:
    template = number("PhoneNumberActiveResponse")
    items = [
        dict(
            template,
            phoneNumberId=f"00000000-0000-4000-8000-{i:012d}",
            phoneNumber=f"+1647930{i:04d}",
        )
        for i in range(7)
    ]
    listed = axp.get(f"{VOICE}/phone-numbers").mock(
        side_effect=[
            httpx.Response(200, json=_page("PhoneNumberPage", "phone-numbers", items[:5], 1, 7)),
            httpx.Response(200, json=_page("PhoneNumberPage", "phone-numbers", items[5:], 2, 7)),
        ]
    )

    result = run_cli("numbers", "list", "--all", "--filter", "status:ACTIVE", "--json")

    assert result.exit_code == 0, result.output
    assert [json_item["phoneNumberId"] for json_item in json.loads(result.stdout)] == [
        item["phoneNumberId"] for item in items
    ]
    pages = [call.request.url.params for call in listed.calls]
    assert [p["pageNumber"] for p in pages] == ["1", "2"]
    assert all(p["filter"] == "status:ACTIVE" and p["pageSize"] == "5" for p in pages)


def test_available_shows_documentation_required(run_cli: Invoke, axp: respx.MockRouter) -> None:
    found = axp.get(f"{VOICE}/available-phone-numbers").respond(
        200, json=example("available-phone-numbers", "AvailablePhoneNumberPage")
    )

    result = run_cli(
        "numbers",
        "available",
        "--country",
        "US",
        "--type",
        "TOLLFREE",
        "--area-code",
        "330",
        "--contains",
        "+1647",
        "--page",
        "2",
    )

    assert result.exit_code == 0, result.output
    params = dict(found.calls.last.request.url.params)
    assert params == {
        "countryCode": "US",
        "type": "TOLLFREE",
        "areaCode": "330",
        "phoneNumber": "+1647",
        "pageNumber": "2",
        "pageSize": "5",
    }
    row = next(line for line in result.stdout.splitlines() if "+16479308804" in line)
    assert row.split() == ["+16479308804", "US", "LOCAL", "yes"]
    assert "verification documents" in result.stderr
    assert "page 2: 1 of 45 numbers" in result.stderr


async def test_python_api_available_all_pages(admin: AxpAdmin, axp: respx.MockRouter) -> None:
    template = example("available-phone-numbers", "AvailablePhoneNumberPage")["phoneNumbers"][0]
    items = [
        dict(template, phoneNumber=f"+1330555{i:04d}", documentationRequired=i % 2 == 0)
        for i in range(6)
    ]
    route = axp.get(f"{VOICE}/available-phone-numbers").mock(
        side_effect=[
            httpx.Response(
                200,
                json=_page("AvailablePhoneNumberPage", "available-phone-numbers", items[:5], 1, 6),
            ),
            httpx.Response(
                200,
                json=_page("AvailablePhoneNumberPage", "available-phone-numbers", items[5:], 2, 6),
            ),
        ]
    )

    numbers = await admin.numbers.available_all(
        AvailableNumberQuery(country_code="us", type="LOCAL")
    )

    assert [n.phone_number for n in numbers] == [i["phoneNumber"] for i in items]
    assert [n.documentation_required for n in numbers] == [True, False, True, False, True, False]
    assert [c.request.url.params["countryCode"] for c in route.calls] == ["US", "US"]


async def test_python_api_add_returns_the_outcome(admin: AxpAdmin, axp: respx.MockRouter) -> None:
    axp.post(f"{VOICE}/phone-numbers").respond(202, json=number("PhoneNumberInProgressResponse"))
    axp.get(f"{VOICE}/phone-numbers/{NUMBER_ID}").respond(
        200, json=number("PhoneNumberInActiveResponse")
    )

    outcome = await admin.numbers.add(
        NewPhoneNumber(
            phone_number="+16479308804", country_code="US", display_name="private Number"
        )
    )

    assert outcome.status == "INACTIVE" and outcome.resource.status_message == VERIFICATION
    assert outcome.polls == 1
