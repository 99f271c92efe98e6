"""AXP administration: element inventory, ACO and MS Teams voice elements, phone numbers.

`AxpAdmin` takes an httpx client that already authenticates (bearer token and `appkey`, see
`platforms/axp/auth.py`) and whose base URL is the AXP host. Every mutating Admin Voice call
answers 202 and finishes in the background, so create/update/add poll `GET …/{id}` until a
terminal status, with exponential intervals and a deadline.

    admin = AxpAdmin(http, "ABCDEF")
    page = await admin.elements.list(ElementQuery(element_type="DigitalProvider"))
    outcome = await admin.numbers.add(NewPhoneNumber(phone_number="+16479308804", ...))
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.axp.admin_schemas import (
    ELEMENT_TERMINAL_STATUSES,
    PHONE_NUMBER_TERMINAL_STATUSES,
    PHONE_NUMBER_UPDATABLE,
    VOICE_ELEMENT_READ_ONLY,
    AcoElement,
    AcoElementChanges,
    AcoElementSpec,
    AvailableNumberQuery,
    AvailablePhoneNumber,
    AvailablePhoneNumberPage,
    Element,
    ElementPage,
    ElementQuery,
    MsTeamsElement,
    MsTeamsElementChanges,
    MsTeamsElementSpec,
    NewPhoneNumber,
    PhoneNumber,
    PhoneNumberChanges,
    PhoneNumberPage,
    PhoneNumberQuery,
    check_account_id,
    check_resource_id,
)
from channel_bridge.platforms.axp.auth import require_axp_settings
from channel_bridge.platforms.axp.errors import checked_request
from channel_bridge.relay.errors import RetryableError

if TYPE_CHECKING:
    from channel_bridge.settings import Settings

log = get_logger(__name__)

INVENTORY_BASE = "/api/admin/inventory/v1/accounts/{account_id}"
VOICE_BASE = "/api/admin/voice/v1/accounts/{account_id}"

# A listing that needs more pages than this is a paging bug (AXP ignoring pageNumber), not data.
MAX_PAGES = 1000
# Largest page every admin list operation accepts (spec: pageSize maximum 50).
MAX_PAGE_SIZE = 50

Resource = TypeVar("Resource", bound=BaseModel)
StatusCallback = Callable[[str | None, float], None]


# --- errors -------------------------------------------------------------------------------


class AxpAdminError(Exception):
    """An admin operation did not complete; the message is one line for an operator."""


class InvalidAdminInput(AxpAdminError, ValueError):
    """Input refused before any request was sent."""


class ProvisioningTimeout(AxpAdminError):
    """The resource did not reach a terminal status before the deadline."""

    def __init__(
        self,
        *,
        label: str,
        resource_id: str,
        last_status: str | None,
        waited_s: float,
        last_error: str | None = None,
    ) -> None:
        self.label = label
        self.resource_id = resource_id
        self.last_status = last_status
        self.waited_s = waited_s
        message = (
            f"gave up waiting for {label} {resource_id} after {waited_s:.0f} s: "
            f"last status {last_status or 'unknown'}"
        )
        if last_error:
            message += f" (last poll error: {last_error})"
        message += "; AXP may still finish it, check again with `get`"
        super().__init__(message)


class IncompleteAcceptance(AxpAdminError):
    """AXP accepted a change but its answer lacks the id needed to follow it."""


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each refused field by its AXP (camelCase) name."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        loc = item.get("loc", ())
        field = ".".join(to_camel(p) if isinstance(p, str) else str(p) for p in loc) or "input"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "invalid input: " + "; ".join(parts)


# --- polling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollPolicy:
    """How long and how often to ask AXP whether an accepted change has finished."""

    timeout_s: float = 300.0
    initial_interval_s: float = 1.0
    max_interval_s: float = 15.0
    multiplier: float = 2.0


@dataclass(frozen=True)
class Outcome(Generic[Resource]):
    """A change AXP finished: the resource as last read and its terminal status."""

    resource: Resource
    status: str
    waited_s: float
    polls: int


class StatusPoller:
    """Polls with exponential intervals until a terminal status or the deadline."""

    def __init__(
        self,
        policy: PollPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._sleep = sleep

    async def wait(
        self,
        fetch: Callable[[], Awaitable[Resource]],
        *,
        status_of: Callable[[Resource], str | None],
        terminal: frozenset[str],
        label: str,
        resource_id: str,
        initial_status: str | None = None,
        on_status: StatusCallback | None = None,
        timeout_s: float | None = None,
    ) -> Outcome[Resource]:
        """Fetch until `status_of` is terminal; the accept answer's status is never trusted."""
        timeout = self.policy.timeout_s if timeout_s is None else timeout_s
        started = self._clock()
        deadline = started + timeout
        interval = self.policy.initial_interval_s
        status, last_error, polls = initial_status, None, 0
        if on_status:
            on_status(status, 0.0)
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ProvisioningTimeout(
                    label=label,
                    resource_id=resource_id,
                    last_status=status,
                    waited_s=self._clock() - started,
                    last_error=last_error,
                )
            await self._sleep(min(interval, remaining))
            interval = min(interval * self.policy.multiplier, self.policy.max_interval_s)
            try:
                resource = await fetch()
            except RetryableError as exc:
                # Throttling, a 5xx or a dropped connection says nothing about the change
                # itself: keep asking until the deadline.
                last_error = str(exc)
                continue
            polls += 1
            status = status_of(resource)
            if on_status:
                on_status(status, self._clock() - started)
            if status in terminal:
                return Outcome(
                    resource=resource,
                    status=status or "",
                    waited_s=self._clock() - started,
                    polls=polls,
                )


# --- HTTP core ----------------------------------------------------------------------------


class _AdminHttp:
    def __init__(self, http: httpx.AsyncClient, account_id: str) -> None:
        self._http = http
        self.inventory_base = INVENTORY_BASE.format(account_id=account_id)
        self.voice_base = VOICE_BASE.format(account_id=account_id)

    async def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """A 2xx response, or `AxpApiError` (problem+json parsed) for anything else."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return await checked_request(
            self._http, method, path, operation=operation, params=query or None, json=json
        )

    async def get_json(
        self, path: str, *, operation: str, params: Mapping[str, Any] | None = None
    ) -> Any:
        response = await self.request("GET", path, operation=operation, params=params)
        try:
            return response.json()
        except ValueError:
            raise AxpAdminError(f"AXP {operation} answered with a body that is not JSON") from None

    async def walk_pages(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        operation: str,
        parse: Callable[[Any], Any],
        items_of: Callable[[Any], list[Any]],
        page_size: int,
    ) -> list[Any]:
        """Every item of a paged listing, asking page 1, 2, ... with the same filter.

        `links.next` is not followed: the inventory spec's own example drops the account from
        it, and our own parameters keep `filter` and `orderBy` on every page.
        """
        collected: list[Any] = []
        for page_number in range(1, MAX_PAGES + 1):
            query = {**params, "pageNumber": page_number, "pageSize": page_size}
            page = parse(
                await self.get_json(
                    path, operation=f"{operation} (page {page_number})", params=query
                )
            )
            items = items_of(page)
            collected.extend(items)
            if not items:
                return collected
            total = page.pagination.total if page.pagination else None
            if total is not None:
                if len(collected) >= total:
                    return collected
            elif not (page.links and page.links.next) or len(items) < page_size:
                return collected
        raise AxpAdminError(f"stopped {operation} after {MAX_PAGES} pages: AXP kept sending more")


def _validated_id(value: str, what: str) -> str:
    try:
        return check_resource_id(value)
    except ValueError as exc:
        raise InvalidAdminInput(f"invalid {what}: {exc}") from None


# --- element inventory --------------------------------------------------------------------


class ElementInventory:
    """`GET /api/admin/inventory/v1/accounts/{accountId}/elements` (read-only in AXP)."""

    def __init__(self, core: _AdminHttp, *, page_size: int) -> None:
        self._core = core
        self._page_size = page_size

    async def list(self, query: ElementQuery | None = None) -> list[Element]:
        """Every element matching the query, all pages walked."""
        query = query or ElementQuery()
        params = {"filter": query.filter_text(), "orderBy": query.order_by}
        return await self._core.walk_pages(
            f"{self._core.inventory_base}/elements",
            params,
            operation="list elements",
            parse=ElementPage.model_validate,
            items_of=lambda page: page.elements,
            page_size=self._page_size,
        )


# --- voice elements -----------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceElementKind(Generic[Resource]):
    label: str
    collection: str
    model: type[Resource]


ACO = VoiceElementKind("Avaya Cloud Office element", "aco-elements", AcoElement)
MSTEAMS = VoiceElementKind("MS Teams element", "msteams-elements", MsTeamsElement)

ElementChanges = AcoElementChanges | MsTeamsElementChanges


class VoiceElements(Generic[Resource]):
    """Create, read, replace and delete one kind of Admin Voice element."""

    def __init__(
        self, core: _AdminHttp, poller: StatusPoller, kind: VoiceElementKind[Resource]
    ) -> None:
        self._core = core
        self._poller = poller
        self.kind = kind

    def _path(self, element_id: str | None = None) -> str:
        base = f"{self._core.voice_base}/{self.kind.collection}"
        return base if element_id is None else f"{base}/{_validated_id(element_id, 'element id')}"

    async def get(self, element_id: str) -> Resource:
        """The element as AXP holds it now."""
        return self.kind.model.model_validate(
            await self._core.get_json(self._path(element_id), operation=f"get {self.kind.label}")
        )

    async def create(
        self,
        spec: AcoElementSpec | MsTeamsElementSpec,
        *,
        on_status: StatusCallback | None = None,
        timeout_s: float | None = None,
    ) -> Outcome[Resource]:
        """Create the element and wait until AXP reports SUCCESS or FAILED."""
        response = await self._core.request(
            "POST", self._path(), json=spec.to_wire(), operation=f"create {self.kind.label}"
        )
        accepted = self._accepted(response)
        element_id = accepted.element_id  # type: ignore[attr-defined]
        log.info("axp element create accepted", kind=self.kind.collection, element_id=element_id)
        return await self._wait(accepted, on_status=on_status, timeout_s=timeout_s)

    async def update(
        self,
        element_id: str,
        changes: ElementChanges | Callable[[Resource], ElementChanges],
        *,
        on_status: StatusCallback | None = None,
        timeout_s: float | None = None,
    ) -> Outcome[Resource]:
        """Apply `changes` to the current element and send it whole (PUT replaces everything)."""
        path = self._path(element_id)
        if not callable(changes) and not changes.to_wire():
            raise InvalidAdminInput("nothing to change: name at least one field to update")
        current = await self._core.get_json(path, operation=f"get {self.kind.label}")
        if not isinstance(current, dict):
            raise AxpAdminError(f"AXP answered get {self.kind.label} with something else")
        if callable(changes):
            changes = changes(self.kind.model.model_validate(current))
        wanted = changes.to_wire()
        if not wanted:
            raise InvalidAdminInput("nothing to change: name at least one field to update")
        body = {key: value for key, value in current.items() if key not in VOICE_ELEMENT_READ_ONLY}
        body.update(wanted)
        response = await self._core.request(
            "PUT", path, json=body, operation=f"update {self.kind.label}"
        )
        accepted = self._accepted(response, fallback_id=element_id)
        log.info(
            "axp element update accepted",
            kind=self.kind.collection,
            element_id=element_id,
            fields=sorted(wanted),
        )
        return await self._wait(accepted, on_status=on_status, timeout_s=timeout_s)

    async def delete(self, element_id: str) -> None:
        """Delete the element (AXP answers 204)."""
        await self._core.request(
            "DELETE", self._path(element_id), operation=f"delete {self.kind.label}"
        )
        log.info("axp element deleted", kind=self.kind.collection, element_id=element_id)

    def _accepted(self, response: httpx.Response, *, fallback_id: str | None = None) -> Resource:
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if not body.get("elementId"):
            if fallback_id is None:
                raise IncompleteAcceptance(
                    f"AXP accepted the {self.kind.label} but returned no elementId to follow; "
                    "find it with `axp elements list`"
                )
            body = {**body, "elementId": fallback_id}
        return self.kind.model.model_validate(body)

    async def _wait(
        self, accepted: Resource, *, on_status: StatusCallback | None, timeout_s: float | None
    ) -> Outcome[Resource]:
        element_id: str = accepted.element_id  # type: ignore[attr-defined]
        return await self._poller.wait(
            lambda: self.get(element_id),
            status_of=lambda e: e.status,  # type: ignore[attr-defined]
            terminal=ELEMENT_TERMINAL_STATUSES,
            label=self.kind.label,
            resource_id=element_id,
            initial_status=accepted.status,  # type: ignore[attr-defined]
            on_status=on_status,
            timeout_s=timeout_s,
        )


# --- phone numbers ------------------------------------------------------------------------


class PhoneNumbers:
    """`/api/admin/voice/v1/accounts/{accountId}/phone-numbers` and available numbers."""

    label = "phone number"

    def __init__(self, core: _AdminHttp, poller: StatusPoller, *, page_size: int) -> None:
        self._core = core
        self._poller = poller
        self._page_size = page_size

    def _path(self, phone_number_id: str | None = None) -> str:
        base = f"{self._core.voice_base}/phone-numbers"
        if phone_number_id is None:
            return base
        return f"{base}/{_validated_id(phone_number_id, 'phone number id')}"

    async def list_page(
        self,
        query: PhoneNumberQuery | None = None,
        *,
        page_number: int = 1,
        page_size: int | None = None,
    ) -> PhoneNumberPage:
        """One page of the account's numbers."""
        query = query or PhoneNumberQuery()
        params = {
            "filter": query.filter,
            "orderBy": query.order_by,
            "pageNumber": page_number,
            "pageSize": _page_size(page_size or self._page_size),
        }
        return PhoneNumberPage.model_validate(
            await self._core.get_json(self._path(), operation="list phone numbers", params=params)
        )

    async def list(self, query: PhoneNumberQuery | None = None) -> list[PhoneNumber]:
        """Every number matching the query, all pages walked."""
        query = query or PhoneNumberQuery()
        return await self._core.walk_pages(
            self._path(),
            {"filter": query.filter, "orderBy": query.order_by},
            operation="list phone numbers",
            parse=PhoneNumberPage.model_validate,
            items_of=lambda page: page.phone_numbers,
            page_size=self._page_size,
        )

    async def get(self, phone_number_id: str) -> PhoneNumber:
        return PhoneNumber.model_validate(
            await self._core.get_json(self._path(phone_number_id), operation="get phone number")
        )

    async def add(
        self,
        number: NewPhoneNumber,
        *,
        on_status: StatusCallback | None = None,
        timeout_s: float | None = None,
    ) -> Outcome[PhoneNumber]:
        """Assign the number and wait for ACTIVE, INACTIVE, DISABLED or FAILED."""
        response = await self._core.request(
            "POST", self._path(), json=number.to_wire(), operation="add phone number"
        )
        accepted = _json_object(response)
        if not accepted.get("phoneNumberId"):
            raise IncompleteAcceptance(
                f"AXP accepted {number.phone_number} but returned no phoneNumberId to follow; "
                "find it with `axp numbers list`"
            )
        log.info("axp phone number add accepted", phone_number_id=accepted["phoneNumberId"])
        return await self._wait(PhoneNumber.model_validate(accepted), on_status, timeout_s)

    async def update(
        self,
        phone_number_id: str,
        changes: PhoneNumberChanges,
        *,
        on_status: StatusCallback | None = None,
        timeout_s: float | None = None,
    ) -> Outcome[PhoneNumber]:
        """Apply `changes` to the number's current settings and send them all (PUT replaces)."""
        wanted = changes.to_wire()
        if not wanted:
            raise InvalidAdminInput("nothing to change: name at least one field to update")
        path = self._path(phone_number_id)
        current = await self._core.get_json(path, operation="get phone number")
        if not isinstance(current, dict):
            raise AxpAdminError("AXP answered get phone number with something other than a number")
        body = {key: current[key] for key in PHONE_NUMBER_UPDATABLE if current.get(key) is not None}
        body.update(wanted)
        response = await self._core.request("PUT", path, json=body, operation="update phone number")
        accepted = {"phoneNumberId": phone_number_id, **_json_object(response)}
        log.info(
            "axp phone number update accepted",
            phone_number_id=phone_number_id,
            fields=sorted(wanted),
        )
        return await self._wait(PhoneNumber.model_validate(accepted), on_status, timeout_s)

    async def release(self, phone_number_id: str) -> None:
        """Release the number from the account (AXP answers 204)."""
        await self._core.request(
            "DELETE", self._path(phone_number_id), operation="release phone number"
        )
        log.info("axp phone number released", phone_number_id=phone_number_id)

    async def available(
        self, query: AvailableNumberQuery, *, page_number: int = 1, page_size: int | None = None
    ) -> AvailablePhoneNumberPage:
        """One page of numbers that could be added, with `documentationRequired`."""
        params = {
            **query.to_wire(),
            "pageNumber": page_number,
            "pageSize": _page_size(page_size or self._page_size),
        }
        path = f"{self._core.voice_base}/available-phone-numbers"
        return AvailablePhoneNumberPage.model_validate(
            await self._core.get_json(path, operation="list available numbers", params=params)
        )

    async def available_all(
        self, query: AvailableNumberQuery
    ) -> builtins.list[AvailablePhoneNumber]:
        """Every available number for the query, all pages walked."""
        return await self._core.walk_pages(
            f"{self._core.voice_base}/available-phone-numbers",
            query.to_wire(),
            operation="list available numbers",
            parse=AvailablePhoneNumberPage.model_validate,
            items_of=lambda page: page.phone_numbers,
            page_size=self._page_size,
        )

    async def _wait(
        self, accepted: PhoneNumber, on_status: StatusCallback | None, timeout_s: float | None
    ) -> Outcome[PhoneNumber]:
        number_id = accepted.phone_number_id or ""
        return await self._poller.wait(
            lambda: self.get(number_id),
            status_of=lambda n: n.status,
            terminal=PHONE_NUMBER_TERMINAL_STATUSES,
            label=self.label,
            resource_id=number_id,
            initial_status=accepted.status,
            on_status=on_status,
            timeout_s=timeout_s,
        )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json() if response.content else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _page_size(value: int) -> int:
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidAdminInput(f"invalid pageSize: must be 1 to {MAX_PAGE_SIZE} (got {value})")
    return value


# --- facade -------------------------------------------------------------------------------


class AxpAdmin:
    """AXP administration over an authenticated client: `elements`, `aco`, `msteams`, `numbers`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        account_id: str,
        *,
        poll: PollPolicy | None = None,
        page_size: int = MAX_PAGE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        try:
            check_account_id(account_id)
        except ValueError as exc:
            raise InvalidAdminInput(f"invalid accountId: {exc}") from None
        # Element inventory allows 5..50 per page, phone numbers 1..50.
        if not 5 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidAdminInput(
                f"invalid page size {page_size}: AXP accepts 5 to {MAX_PAGE_SIZE}"
            )
        self.account_id = account_id
        core = _AdminHttp(http, account_id)
        poller = StatusPoller(poll or PollPolicy(), clock=clock, sleep=sleep)
        self.elements = ElementInventory(core, page_size=page_size)
        self.aco: VoiceElements[AcoElement] = VoiceElements(core, poller, ACO)
        self.msteams: VoiceElements[MsTeamsElement] = VoiceElements(core, poller, MSTEAMS)
        self.numbers = PhoneNumbers(core, poller, page_size=page_size)

    @classmethod
    def from_settings(
        cls, http: httpx.AsyncClient, settings: Settings, **overrides: Any
    ) -> AxpAdmin:
        """An admin for the configured account with the configured polling and paging."""
        require_axp_settings(settings)
        options: dict[str, Any] = {
            "poll": PollPolicy(
                timeout_s=settings.axp_admin_poll_timeout_s,
                initial_interval_s=settings.axp_admin_poll_initial_interval_s,
                max_interval_s=settings.axp_admin_poll_max_interval_s,
            ),
            "page_size": settings.axp_admin_page_size,
        }
        options.update(overrides)
        return cls(http, settings.axp_account_id or "", **options)
