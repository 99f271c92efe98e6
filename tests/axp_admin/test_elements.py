"""Element inventory: every page walked, filters on the query string of each page."""

from __future__ import annotations

import json

import httpx
import respx

from channel_bridge.platforms.axp.admin import AxpAdmin
from channel_bridge.platforms.axp.admin_schemas import ElementQuery
from tests.axp_admin.conftest import INVENTORY, Invoke, example


def elements(count: int) -> list[dict]:
    """`count` copies of the spec's ChatConnector element, each with its own id and name."""
    template = example("element-inventory", "ElementPage")["elements"][1]
    return [
        dict(
            template,
            elementId=f"883542c6-94bc-4d23-ace8-{i:012d}",
            elementData={**template["elementData"], "name": f"Provider{i}"},
        )
        for i in range(count)
    ]


def page(items: list[dict], number: int, total: int | None, *, next_link: str | None = "x") -> dict:
    body = example("element-inventory", "ElementPage")
    body["elements"] = items
    body["pagination"] = {"pageNumber": number, "pageSize": 5}
    if total is not None:
        body["pagination"]["total"] = total
    body["links"] = {"prev": "", "next": next_link or ""}
    return body


def test_list_walks_all_pages_with_the_filters_on_each(
    run_cli: Invoke, axp: respx.MockRouter
) -> None:
    items = elements(12)
    route = axp.get(f"{INVENTORY}/elements").mock(
        side_effect=[
            httpx.Response(200, json=page(items[0:5], 1, 12)),
            httpx.Response(200, json=page(items[5:10], 2, 12)),
            httpx.Response(200, json=page(items[10:], 3, 12)),
        ]
    )

    result = run_cli(
        "elements",
        "list",
        "--type",
        "DigitalProvider",
        "--subtype",
        "ChatConnector",
        "--order-by",
        "name desc",
        "--json",
    )

    assert result.exit_code == 0, result.output
    assert [e["elementId"] for e in json.loads(result.stdout)] == [i["elementId"] for i in items]
    params = [call.request.url.params for call in route.calls]
    assert [p["pageNumber"] for p in params] == ["1", "2", "3"]
    for query in params:
        assert query["filter"] == "elementType:DigitalProvider,elementSubType:ChatConnector"
        assert query["orderBy"] == "name desc" and query["pageSize"] == "5"


def test_list_prints_id_type_subtype_name_status(run_cli: Invoke, axp: respx.MockRouter) -> None:
    body = example("element-inventory", "ElementPage")
    body["pagination"]["total"] = 2  # the example is page 2 of 45; here it is the only page
    axp.get(f"{INVENTORY}/elements").respond(200, json=body)

    result = run_cli("elements", "list")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "SUBTYPE", "NAME", "STATUS"]
    assert lines[1].split() == [
        "ce8042a2-12f8-406f-5fd3-86c1c16d3a53",
        "ACO",
        "Avaya",
        "Cloud",
        "Office",
        "SUCCESS",
    ]
    assert lines[2].split() == [
        "883542c6-94bc-4d23-ace8-915bc91dfbb8",
        "DigitalProvider",
        "ChatConnector",
        "ChatProvider",
        "SUCCESS",
    ]


def test_raw_filter_and_name_are_combined(run_cli: Invoke, axp: respx.MockRouter) -> None:
    route = axp.get(f"{INVENTORY}/elements").respond(200, json=page(elements(1), 1, 1))

    result = run_cli("elements", "list", "--filter", "hostname:chat*", "--name", "Chat*")

    assert result.exit_code == 0, result.output
    assert route.calls.last.request.url.params["filter"] == "hostname:chat*,name:Chat*"
    assert "orderBy" not in route.calls.last.request.url.params


async def test_without_a_total_the_blank_next_link_ends_the_walk(
    admin: AxpAdmin, axp: respx.MockRouter
) -> None:
    items = elements(8)
    route = axp.get(f"{INVENTORY}/elements").mock(
        side_effect=[
            httpx.Response(200, json=page(items[:5], 1, None)),
            httpx.Response(200, json=page(items[5:], 2, None, next_link=None)),
        ]
    )

    found = await admin.elements.list(ElementQuery(name="Provider*"))

    assert [e.element_id for e in found] == [i["elementId"] for i in items]
    assert route.call_count == 2
    assert found[0].name == "Provider0" and found[0].element_sub_type == "ChatConnector"


async def test_an_empty_page_ends_the_walk(admin: AxpAdmin, axp: respx.MockRouter) -> None:
    route = axp.get(f"{INVENTORY}/elements").mock(
        side_effect=[
            httpx.Response(200, json=page(elements(5), 1, 40)),  # total overstated by AXP
            httpx.Response(200, json=page([], 2, 40)),
        ]
    )

    found = await admin.elements.list()

    assert len(found) == 5 and route.call_count == 2
