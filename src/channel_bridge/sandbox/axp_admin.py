"""AXP admin APIs, simulated: the element inventory, ACO and MS Teams voice elements, phone
numbers and the available-number search, so `channel-bridge axp elements|aco|msteams|numbers`
can be tried in sandbox mode.

Shapes follow the Admin Inventory and Admin Voice specs (camelCase, `pagination` pages).
Changes are accepted with 202 and a pending status, and reach their terminal status on the
first read, the way the real API finishes a quick change (the CLI polls with GET by id).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

VOICE = "/api/admin/voice/v1/accounts/{account_id}"
INVENTORY = "/api/admin/inventory/v1/accounts/{account_id}"
COLLECTIONS = {"aco-elements": "ACO", "msteams-elements": "MSTEAMS"}
# Numbers the search offers: a few per country and type, none needing documents but one.
AVAILABLE = [
    ("+13305550101", "US", "LOCAL", False),
    ("+13305550102", "US", "LOCAL", False),
    ("+18885550103", "US", "TOLLFREE", True),
    ("+442075550104", "GB", "LOCAL", True),
]

Enter = Callable[[Request], Awaitable[bytes]]
Problem = Callable[[int, str], Response]


@dataclass
class AxpAdminState:
    elements: dict[str, dict[str, Any]] = field(default_factory=dict)
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)


def _page(items: list[dict[str, Any]], request: Request, key: str) -> dict[str, Any]:
    number = max(1, int(request.query_params.get("pageNumber", "1") or 1))
    size = max(1, min(50, int(request.query_params.get("pageSize", "50") or 50)))
    chunk = items[(number - 1) * size : number * size]
    return {"pagination": {"pageNumber": number, "pageSize": size, "total": len(items)}, key: chunk}


def _settle(resource: dict[str, Any], done: str) -> dict[str, Any]:
    """A pending change is finished by the time anyone asks."""
    if resource.get("status") in ("PENDING", "IN_PROGRESS"):
        resource["status"] = done
    return resource


def add_admin_routes(
    app: FastAPI,
    state: AxpAdminState,
    *,
    enter: Enter,
    body_of: Callable[[bytes], Any],
    problem: Problem,
) -> None:
    """The admin endpoints on the AXP simulator's app (its token check, its problem bodies)."""

    def not_found(what: str) -> Response:
        return problem(404, f"No {what} with that id")

    @app.get(INVENTORY + "/elements")
    async def list_elements(account_id: str, request: Request) -> Response:
        await enter(request)
        items = [
            {
                "elementId": e["elementId"],
                "description": e.get("description"),
                "elementType": "VOICE",
                "elementSubType": e["_kind"],
                "status": _settle(e, "SUCCESS")["status"],
                "elementData": {"name": e.get("name")},
            }
            for e in state.elements.values()
        ]
        return JSONResponse(_page(items, request, "elements"))

    for collection, kind in COLLECTIONS.items():
        _element_routes(app, state, collection, kind, enter, body_of, not_found)

    @app.get(VOICE + "/phone-numbers")
    async def list_numbers(account_id: str, request: Request) -> Response:
        await enter(request)
        items = [_settle(n, "ACTIVE") for n in state.numbers.values()]
        return JSONResponse(_page(items, request, "phoneNumbers"))

    @app.post(VOICE + "/phone-numbers")
    async def add_number(account_id: str, request: Request) -> Response:
        body = body_of(await enter(request))
        if not isinstance(body, dict) or not body.get("phoneNumber"):
            return problem(400, "phoneNumber is required")
        number = {
            **body,
            "phoneNumberId": str(uuid.uuid4()),
            "accountId": account_id,
            "status": "PENDING",
        }
        state.numbers[number["phoneNumberId"]] = number
        return JSONResponse(number, status_code=202)

    @app.get(VOICE + "/phone-numbers/{number_id}")
    async def get_number(account_id: str, number_id: str, request: Request) -> Response:
        await enter(request)
        found = state.numbers.get(number_id)
        return JSONResponse(_settle(found, "ACTIVE")) if found else not_found("phone number")

    @app.put(VOICE + "/phone-numbers/{number_id}")
    async def update_number(account_id: str, number_id: str, request: Request) -> Response:
        body = body_of(await enter(request))
        found = state.numbers.get(number_id)
        if found is None:
            return not_found("phone number")
        found.update(body if isinstance(body, dict) else {}, status="PENDING")
        return JSONResponse(found, status_code=202)

    @app.delete(VOICE + "/phone-numbers/{number_id}")
    async def release_number(account_id: str, number_id: str, request: Request) -> Response:
        await enter(request)
        if state.numbers.pop(number_id, None) is None:
            return not_found("phone number")
        return Response(status_code=204)

    @app.get(VOICE + "/available-phone-numbers")
    async def available(account_id: str, request: Request) -> Response:
        await enter(request)
        query = request.query_params
        taken = {n.get("phoneNumber") for n in state.numbers.values()}
        items = [
            {"phoneNumber": p, "countryCode": c, "type": t, "documentationRequired": d}
            for p, c, t, d in AVAILABLE
            if p not in taken
            and c == query.get("countryCode", c)
            and t == query.get("type", t)
            and query.get("contains", "") in p
        ]
        return JSONResponse(_page(items, request, "phoneNumbers"))


def _element_routes(
    app: FastAPI,
    state: AxpAdminState,
    collection: str,
    kind: str,
    enter: Enter,
    body_of: Callable[[bytes], Any],
    not_found: Callable[[str], Response],
) -> None:
    base = VOICE + "/" + collection

    def mine(element_id: str) -> dict[str, Any] | None:
        found = state.elements.get(element_id)
        return found if found is not None and found["_kind"] == kind else None

    def shown(element: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in _settle(element, "SUCCESS").items() if not k.startswith("_")}

    @app.post(base, name=f"create {collection}")
    async def create(account_id: str, request: Request) -> Response:
        body = body_of(await enter(request))
        element = {
            **(body if isinstance(body, dict) else {}),
            "elementId": str(uuid.uuid4()),
            "elementType": kind,
            "status": "IN_PROGRESS",
            "_kind": kind,
        }
        state.elements[element["elementId"]] = element
        return JSONResponse({k: v for k, v in element.items() if k != "_kind"}, status_code=202)

    @app.get(base + "/{element_id}", name=f"get {collection}")
    async def get(account_id: str, element_id: str, request: Request) -> Response:
        await enter(request)
        found = mine(element_id)
        return JSONResponse(shown(found)) if found else not_found("element")

    @app.put(base + "/{element_id}", name=f"update {collection}")
    async def update(account_id: str, element_id: str, request: Request) -> Response:
        body = body_of(await enter(request))
        found = mine(element_id)
        if found is None:
            return not_found("element")
        found.update(body if isinstance(body, dict) else {}, status="IN_PROGRESS")
        return JSONResponse({k: v for k, v in found.items() if k != "_kind"}, status_code=202)

    @app.delete(base + "/{element_id}", name=f"delete {collection}")
    async def delete(account_id: str, element_id: str, request: Request) -> Response:
        await enter(request)
        if mine(element_id) is None:
            return not_found("element")
        del state.elements[element_id]
        return Response(status_code=204)
