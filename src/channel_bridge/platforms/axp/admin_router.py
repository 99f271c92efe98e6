"""Read-only AXP administration for dashboards: `/admin/v1/axp/elements` and `…/phone-numbers`.

Every call goes to AXP live (these are operator views, not hot paths). Changes stay in the CLI
and the Python API, where a person watches the asynchronous outcome.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ValidationError

from channel_bridge.deps import AdminDep, bridge_state
from channel_bridge.errors import (
    BadRequest,
    BridgeError,
    NotFound,
    ServiceUnavailable,
    Unprocessable,
    field_errors_from_pydantic,
)
from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.axp.admin import AxpAdmin, AxpAdminError, InvalidAdminInput
from channel_bridge.platforms.axp.admin_schemas import (
    Element,
    ElementQuery,
    PhoneNumber,
    PhoneNumberQuery,
    check_resource_id,
)
from channel_bridge.platforms.axp.errors import AxpApiError
from channel_bridge.relay.errors import RetryableError

log = get_logger(__name__)

router = APIRouter(prefix="/admin/v1/axp", tags=["axp-admin"], dependencies=[AdminDep])


class AxpUpstreamError(BridgeError):
    status, title, slug = 502, "AXP error", "axp-upstream-error"


def get_axp_admin(request: Request) -> AxpAdmin:
    """The AXP admin client the lifespan built over the AXP platform's shared HTTP client."""
    admin = bridge_state(request).axp_admin
    if admin is None:
        raise ServiceUnavailable("AXP is not configured: set the BRIDGE_AXP_* settings")
    return admin


AxpAdminDep = Annotated[AxpAdmin, Depends(get_axp_admin)]


class ElementList(BaseModel):
    elements: list[Element]
    total: int


class PhoneNumberList(BaseModel):
    # The AXP field name, as a dashboard reading AXP docs expects it.
    phoneNumbers: list[PhoneNumber]
    total: int


def _upstream(exc: AxpApiError | AxpAdminError) -> BridgeError:
    """What a dashboard should see when AXP refuses or fails."""
    if isinstance(exc, InvalidAdminInput):
        return Unprocessable(str(exc))
    if not isinstance(exc, AxpApiError):
        return AxpUpstreamError(str(exc))
    if isinstance(exc, RetryableError):
        headers = {"Retry-After": str(int(exc.retry_after_s))} if exc.retry_after_s else None
        return ServiceUnavailable(f"AXP is unavailable: {exc}", headers=headers)
    if exc.status == 400:
        errors = [
            {"field": v.field or "query", "message": v.message or "invalid"} for v in exc.violations
        ]
        return BadRequest(f"AXP refused the query: {exc}", errors=errors or None)
    # 401/403 concern the bridge's own AXP credentials or role, not the dashboard's request.
    return AxpUpstreamError(str(exc))


def _validated(build: Any) -> Any:
    try:
        return build()
    except ValidationError as exc:
        errors = field_errors_from_pydantic([dict(e) for e in exc.errors()])
        raise Unprocessable("The query is not valid", errors=errors) from None


@router.get("/elements", response_model=ElementList, summary="AXP element inventory (all pages)")
async def list_elements(
    admin: AxpAdminDep,
    element_type: Annotated[str | None, Query(alias="type", description="elementType")] = None,
    subtype: Annotated[str | None, Query(description="elementSubType")] = None,
    name: Annotated[str | None, Query(description="Name, * wildcards allowed")] = None,
    filter_: Annotated[str | None, Query(alias="filter", description="Raw AXP filter")] = None,
    order_by: Annotated[str | None, Query(alias="orderBy")] = None,
) -> ElementList:
    query = _validated(
        lambda: ElementQuery(
            filter=filter_,
            order_by=order_by,
            element_type=element_type,
            element_sub_type=subtype,
            name=name,
        )
    )
    try:
        elements = await admin.elements.list(query)
    except (AxpApiError, AxpAdminError) as exc:
        raise _upstream(exc) from None
    return ElementList(elements=elements, total=len(elements))


@router.get(
    "/phone-numbers",
    response_model=PhoneNumberList,
    summary="The account's phone numbers (all pages)",
)
async def list_phone_numbers(
    admin: AxpAdminDep,
    filter_: Annotated[str | None, Query(alias="filter", description="e.g. countryCode:US")] = None,
    order_by: Annotated[str | None, Query(alias="orderBy")] = None,
) -> PhoneNumberList:
    query = _validated(lambda: PhoneNumberQuery(filter=filter_, order_by=order_by))
    try:
        numbers = await admin.numbers.list(query)
    except (AxpApiError, AxpAdminError) as exc:
        raise _upstream(exc) from None
    return PhoneNumberList(phoneNumbers=numbers, total=len(numbers))


@router.get(
    "/phone-numbers/{phone_number_id}",
    response_model=PhoneNumber,
    summary="One phone number with its status and statusMessage",
)
async def get_phone_number(admin: AxpAdminDep, phone_number_id: str) -> PhoneNumber:
    try:
        check_resource_id(phone_number_id)
    except ValueError as exc:
        errors = [{"field": "phone_number_id", "message": str(exc)}]
        raise Unprocessable(str(exc), errors=errors) from None
    try:
        return await admin.numbers.get(phone_number_id)
    except AxpApiError as exc:
        if exc.status == 404:
            raise NotFound(f"AXP has no phone number {phone_number_id}") from None
        raise _upstream(exc) from None
    except AxpAdminError as exc:
        raise _upstream(exc) from None
