"""Wire models for the AXP admin APIs: Element Inventory 1.0.1 and Admin Voice 1.0.2.

Two kinds of model live here:
- *read* models (`Element`, `AcoElement`, `PhoneNumber`, ...) parse what AXP returns. They are
  lenient (no pattern checks, unknown fields kept) so a vendor addition never breaks a listing.
- *request* models (`AcoElementSpec`, `NewPhoneNumber`, `AvailableNumberQuery`, ...) carry the
  spec's own constraints, so bad input is refused before any request is sent.

The spec patterns use `\\p{L}` (any Unicode letter), which Python's `re` lacks; the checks below
test the same character classes with `unicodedata` instead.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

# --- single-value checks (messages are shown to operators as they are) ------------------

E164_PATTERN = re.compile(r"^\+[1-9]\d{3,13}$")
COUNTRY_PATTERN = re.compile(r"^[A-Z]{2}$")
ACCOUNT_ID_PATTERN = re.compile(r"^[a-zA-Z]{6}$")
RESOURCE_ID_PATTERN = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# ACOElement.didNumbers items: "E.164 format", maxLength 13.
DID_MAX_CHARS = 13
DID_MAX_ITEMS = 2000
NAME_MAX_CHARS = 255
DESCRIPTION_MAX_CHARS = 1024


def _is_letter(char: str) -> bool:
    return unicodedata.category(char).startswith("L")


def check_e164(value: str) -> str:
    if not E164_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an E.164 number: '+', then 4 to 14 digits, the first not 0 "
            "(e.g. +16479308804)"
        )
    return value


def check_did_number(value: str) -> str:
    check_e164(value)
    if len(value) > DID_MAX_CHARS:
        raise ValueError(f"{value!r} is longer than the {DID_MAX_CHARS} characters a DID may have")
    return value


def normalise_country(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def check_country(value: str) -> str:
    if not COUNTRY_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not a two-letter ISO country code (e.g. US, GB, IN)")
    return value


def check_element_name(value: str) -> str:
    # ^[a-zA-Z0-9\p{L}\-\_\.\ ]+$ with 1..255 characters
    if not 1 <= len(value) <= NAME_MAX_CHARS:
        raise ValueError(f"must be 1 to {NAME_MAX_CHARS} characters long (got {len(value)})")
    bad = sorted({c for c in value if not (_is_letter(c) or c in "0123456789-_. ")})
    if bad:
        raise ValueError(
            f"may contain only letters, digits, space, '-', '_' and '.'; not {''.join(bad)!r}"
        )
    return value


def check_description(value: str) -> str:
    # (^$|^[a-zA-Z0-9\p{L}\(\)\-\_\.\ ]+$) with at most 1024 characters
    if len(value) > DESCRIPTION_MAX_CHARS:
        raise ValueError(f"must be at most {DESCRIPTION_MAX_CHARS} characters (got {len(value)})")
    bad = sorted({c for c in value if not (_is_letter(c) or c in "0123456789()-_. ")})
    if bad:
        raise ValueError(
            "may contain only letters, digits, space, '(', ')', '-', '_' and '.'; "
            f"not {''.join(bad)!r}"
        )
    return value


def check_domain(value: str) -> str:
    # ^((?!-)[A-Za-z0-9\p{L}-]{1,63}(?<!-)\.)+[A-Za-z\p{L}]{2,63}$ with 3..255 characters
    problem = f"{value!r} is not a domain name like exchange.com"
    if not 3 <= len(value) <= 255:
        raise ValueError(f"{problem}: it must be 3 to 255 characters long")
    *labels, top = value.split(".")
    if not labels:
        raise ValueError(f"{problem}: it needs at least one dot")
    for label in labels:
        if not 1 <= len(label) <= 63 or label.startswith("-") or label.endswith("-"):
            raise ValueError(
                f"{problem}: label {label!r} must be 1 to 63 characters, no '-' at either end"
            )
        if not all(_is_letter(c) or (c.isdigit() and c.isascii()) or c == "-" for c in label):
            raise ValueError(f"{problem}: label {label!r} may hold only letters, digits and '-'")
    if not 2 <= len(top) <= 63 or not all(_is_letter(c) for c in top):
        raise ValueError(f"{problem}: the top-level label must be 2 to 63 letters")
    return value


def check_resource_id(value: str) -> str:
    if not RESOURCE_ID_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not an AXP id: expected a 36-character UUID")
    return value


def check_account_id(value: str) -> str:
    if not ACCOUNT_ID_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not an AXP account id: expected 6 letters (e.g. ABCDEF)")
    return value


E164Number = Annotated[str, AfterValidator(check_e164)]
DidNumber = Annotated[str, AfterValidator(check_did_number)]
CountryCode = Annotated[str, BeforeValidator(normalise_country), AfterValidator(check_country)]
ElementName = Annotated[str, AfterValidator(check_element_name)]
ElementDescription = Annotated[str, AfterValidator(check_description)]
DomainName = Annotated[str, AfterValidator(check_domain)]
DidNumbers = Annotated[list[DidNumber], Field(max_length=DID_MAX_ITEMS)]
NumberType = Literal["LOCAL", "TOLLFREE"]

ELEMENT_TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILED"})
PHONE_NUMBER_TERMINAL_STATUSES = frozenset({"ACTIVE", "INACTIVE", "DISABLED", "FAILED"})


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class ReadModel(WireModel):
    # Keep fields AXP adds later: an update re-sends them instead of dropping them.
    model_config = ConfigDict(extra="allow")


class RequestModel(WireModel):
    model_config = ConfigDict(extra="forbid")


# --- paging -------------------------------------------------------------------------------


class Pagination(ReadModel):
    page_number: int | None = None
    page_size: int | None = None
    total: int | None = None


class Links(ReadModel):
    prev: str | None = None
    next: str | None = None


# --- Element Inventory (read-only API) ----------------------------------------------------


class Element(ReadModel):
    element_id: str | None = None
    description: str | None = None
    element_data: dict[str, Any] = Field(default_factory=dict)
    element_type: str | None = None
    element_sub_type: str | None = None
    status: str | None = None
    status_code: str | None = None
    status_message: str | None = None

    @property
    def name(self) -> str | None:
        """Inventory elements carry their name inside the free-form `elementData`."""
        value = self.element_data.get("name")
        return value if isinstance(value, str) else None


class ElementPage(ReadModel):
    pagination: Pagination | None = None
    elements: list[Element] = Field(default_factory=list)
    links: Links | None = None


# --- Voice elements: Avaya Cloud Office and Microsoft Teams -------------------------------

# Fields AXP sets itself; they are never sent back on an update.
VOICE_ELEMENT_READ_ONLY = frozenset(
    {"elementId", "elementType", "status", "statusMessage", "statusCode"}
)


class VoiceElement(ReadModel):
    element_id: str | None = None
    name: str | None = None
    description: str | None = None
    did_numbers: list[str] | None = None
    is_chat_enabled: bool | None = None
    element_type: str | None = None
    status: str | None = None
    status_message: str | None = None


class AcoElement(VoiceElement):
    environment: str | None = None
    is_extension_calling: bool | None = None
    presence_application_type: str | None = None


class MsTeamsElement(VoiceElement):
    domain: str | None = None
    client_id: str | None = None


class AcoElementSpec(RequestModel):
    """Body of `POST /aco-elements` (ACOElement, writable fields)."""

    name: ElementName
    environment: Literal["Production", "Development"]
    description: ElementDescription | None = None
    did_numbers: DidNumbers | None = None
    is_chat_enabled: bool | None = None
    is_extension_calling: bool | None = None
    presence_application_type: Literal["AVAYA_CLOUD_OFFICE", "AVAYA_CLOUD_PHONE"] | None = None


class AcoElementChanges(RequestModel):
    """Fields to change on an ACO element; anything unset keeps its current value."""

    name: ElementName | None = None
    environment: Literal["Production", "Development"] | None = None
    description: ElementDescription | None = None
    did_numbers: DidNumbers | None = None
    is_chat_enabled: bool | None = None
    is_extension_calling: bool | None = None
    presence_application_type: Literal["AVAYA_CLOUD_OFFICE", "AVAYA_CLOUD_PHONE"] | None = None


class MsTeamsElementSpec(RequestModel):
    """Body of `POST /msteams-elements` (MSTeamsElement, writable fields)."""

    name: ElementName
    description: ElementDescription | None = None
    did_numbers: DidNumbers | None = None
    domain: DomainName | None = None
    is_chat_enabled: bool | None = None
    client_id: Annotated[str, Field(max_length=255)] | None = None


class MsTeamsElementChanges(RequestModel):
    """Fields to change on an MS Teams element; anything unset keeps its current value."""

    name: ElementName | None = None
    description: ElementDescription | None = None
    did_numbers: DidNumbers | None = None
    domain: DomainName | None = None
    is_chat_enabled: bool | None = None
    client_id: Annotated[str, Field(max_length=255)] | None = None


# --- Phone numbers ------------------------------------------------------------------------


class PhoneNumber(ReadModel):
    phone_number_id: str | None = None
    phone_number: str | None = None
    display_name: str | None = None
    country_code: str | None = None
    type: str | None = None
    account_id: str | None = None
    is_calling_party_number: bool | None = None
    status: str | None = None
    status_message: str | None = None
    preferred_media_location: str | None = None


class PhoneNumberPage(ReadModel):
    pagination: Pagination | None = None
    phone_numbers: list[PhoneNumber] = Field(default_factory=list)
    links: Links | None = None


class NewPhoneNumber(RequestModel):
    """Body of `POST /phone-numbers` (PhoneNumber, writable fields)."""

    phone_number: E164Number
    display_name: Annotated[str, Field(min_length=1, max_length=255)]
    country_code: CountryCode
    is_calling_party_number: bool | None = None
    preferred_media_location: Annotated[str, Field(min_length=1, max_length=7)] | None = None


# The only fields `PUT /phone-numbers/{id}` accepts (UpdatePhoneNumber).
PHONE_NUMBER_UPDATABLE = ("displayName", "isCallingPartyNumber", "preferredMediaLocation")


class PhoneNumberChanges(RequestModel):
    """Fields to change on a number; anything unset keeps its current value."""

    display_name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    is_calling_party_number: bool | None = None
    preferred_media_location: Annotated[str, Field(min_length=1, max_length=7)] | None = None


class AvailablePhoneNumber(ReadModel):
    phone_number: str | None = None
    country_code: str | None = None
    type: str | None = None
    documentation_required: bool | None = None


class AvailablePhoneNumberPage(ReadModel):
    pagination: Pagination | None = None
    phone_numbers: list[AvailablePhoneNumber] = Field(default_factory=list)
    links: Links | None = None


class AvailableNumberQuery(RequestModel):
    """Query of `GET /available-phone-numbers`."""

    country_code: CountryCode
    type: NumberType
    area_code: Annotated[str, Field(min_length=1, max_length=5)] | None = None
    # `phoneNumber` on the wire: the characters the number must contain.
    contains: Annotated[str, Field(min_length=1, max_length=15)] | None = Field(
        default=None, alias="phoneNumber"
    )


# Query strings AXP caps at 255 characters (filter, orderBy).
QUERY_TEXT_MAX_CHARS = 255
FilterText = Annotated[str, Field(min_length=1, max_length=QUERY_TEXT_MAX_CHARS)]
# Element.elementType / elementSubType pattern, plus the `*` wildcard the filter allows.
ElementTypeFilter = Annotated[
    str, Field(min_length=1, max_length=255, pattern=r"^[a-zA-Z0-9\-_. *]+$")
]


class ElementQuery(RequestModel):
    """Query of `GET /elements`: raw `filter` plus the convenience fields, AND-ed together."""

    filter: FilterText | None = None
    order_by: FilterText | None = None
    element_type: ElementTypeFilter | None = None
    element_sub_type: ElementTypeFilter | None = None
    # A comma would start a second filter term.
    name: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^,]+$")] | None = None

    @model_validator(mode="after")
    def _filter_fits(self) -> ElementQuery:
        text = self.filter_text()
        if text is not None and len(text) > QUERY_TEXT_MAX_CHARS:
            raise ValueError(f"the combined filter is over {QUERY_TEXT_MAX_CHARS} characters")
        return self

    def filter_text(self) -> str | None:
        """The `filter` parameter: the raw filter and `field:value` terms joined by commas."""
        terms = [self.filter] if self.filter else []
        for field, value in (
            ("elementType", self.element_type),
            ("elementSubType", self.element_sub_type),
            ("name", self.name),
        ):
            if value:
                terms.append(f"{field}:{value}")
        return ",".join(terms) or None


class PhoneNumberQuery(RequestModel):
    """Query of `GET /phone-numbers`."""

    filter: FilterText | None = None
    order_by: FilterText | None = None


class Violation(ReadModel):
    field: str | None = None
    message: str | None = None
    code: int | None = None


class Problem(ReadModel):
    """RFC 7807 body every AXP API answers errors with."""

    type: str | None = None
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    instance: str | None = None
    violations: list[Violation] | None = None
