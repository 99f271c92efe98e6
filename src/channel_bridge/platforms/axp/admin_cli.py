"""`channel-bridge axp elements|aco|msteams|numbers …`: AXP administration from a terminal.

Input is validated against the spec before anything is sent. Changes that AXP finishes in the
background (202) are followed with a spinner until a terminal status. Exit codes:

    0 done (SUCCESS / ACTIVE)            4 number added but INACTIVE: verification documents needed
    1 FAILED or DISABLED, or cancelled   5 gave up waiting (timeout); AXP may still finish
    2 invalid input or configuration     6 conflict (409): name or number already taken
    3 AXP answered with another error
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from enum import IntEnum
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

from channel_bridge.platforms.axp.admin import (
    AxpAdmin,
    AxpAdminError,
    InvalidAdminInput,
    Outcome,
    ProvisioningTimeout,
    StatusCallback,
    describe_validation_error,
)
from channel_bridge.platforms.axp.admin_schemas import (
    AcoElementChanges,
    AcoElementSpec,
    AvailableNumberQuery,
    ElementQuery,
    MsTeamsElementChanges,
    MsTeamsElementSpec,
    NewPhoneNumber,
    PhoneNumber,
    PhoneNumberChanges,
    PhoneNumberQuery,
    VoiceElement,
    check_did_number,
    check_resource_id,
)
from channel_bridge.platforms.axp.errors import AxpApiError
from channel_bridge.settings import ConfigError

Model = TypeVar("Model", bound=BaseModel)


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    INVALID_INPUT = 2
    API_ERROR = 3
    VERIFICATION_NEEDED = 4
    TIMED_OUT = 5
    CONFLICT = 6


elements_app = typer.Typer(help="AXP element inventory (read-only).", no_args_is_help=True)
aco_app = typer.Typer(help="Avaya Cloud Office voice element.", no_args_is_help=True)
msteams_app = typer.Typer(help="Microsoft Teams voice element.", no_args_is_help=True)
numbers_app = typer.Typer(help="Contact-centre phone numbers.", no_args_is_help=True)


def register_admin_commands(axp_app: typer.Typer) -> None:
    """Add the admin groups under `channel-bridge axp`."""
    axp_app.add_typer(elements_app, name="elements")
    axp_app.add_typer(aco_app, name="aco")
    axp_app.add_typer(msteams_app, name="msteams")
    axp_app.add_typer(numbers_app, name="numbers")


@asynccontextmanager
async def open_admin() -> AsyncIterator[AxpAdmin]:
    """The `AxpAdmin` every command uses (tests replace this to mock the HTTP edge)."""
    from channel_bridge.platforms.axp.auth import build_axp_http
    from channel_bridge.startup import load_upstream_settings

    settings = load_upstream_settings()
    async with build_axp_http(settings) as http:
        yield AxpAdmin.from_settings(http, settings)


# --- running a command --------------------------------------------------------------------


def _fail(message: str, code: ExitCode) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(int(code))


def _validated(build: Callable[[], Model]) -> Model:
    """The request model, or exit 2 naming each refused field (nothing has been sent)."""
    try:
        return build()
    except ValidationError as exc:
        raise _fail(describe_validation_error(exc), ExitCode.INVALID_INPUT) from None


def _valid_id(value: str, what: str) -> str:
    try:
        return check_resource_id(value)
    except ValueError as exc:
        raise _fail(f"invalid input: {what}: {exc}", ExitCode.INVALID_INPUT) from None


def _run(
    work: Callable[[AxpAdmin], Awaitable[ExitCode | None]], *, conflict_hint: str = ""
) -> None:
    """Run `work` with an admin and turn every failure into one line and an exit code."""
    code = asyncio.run(_guarded(work, conflict_hint))
    if code:
        raise typer.Exit(int(code))


async def _guarded(
    work: Callable[[AxpAdmin], Awaitable[ExitCode | None]], conflict_hint: str
) -> ExitCode:
    try:
        async with open_admin() as admin:
            return await work(admin) or ExitCode.OK
    except InvalidAdminInput as exc:
        message, code = str(exc), ExitCode.INVALID_INPUT
    except ConfigError as exc:
        message, code = f"configuration error: {exc}", ExitCode.INVALID_INPUT
    except AxpApiError as exc:
        if exc.status == 409:
            hint = f" ({conflict_hint})" if conflict_hint else ""
            message, code = f"conflict: {exc}{hint}", ExitCode.CONFLICT
        else:
            message, code = f"error: {exc}", ExitCode.API_ERROR
    except ProvisioningTimeout as exc:
        message, code = f"timeout: {exc}", ExitCode.TIMED_OUT
    except AxpAdminError as exc:
        message, code = f"error: {exc}", ExitCode.API_ERROR
    typer.echo(message, err=True)
    return code


@contextmanager
def _spinner(label: str) -> Iterator[StatusCallback]:
    console = Console(stderr=True)
    with console.status(f"{label}: submitted") as status:

        def show(state: str | None, elapsed_s: float) -> None:
            status.update(f"{label}: {state or 'status not reported yet'} ({elapsed_s:.0f} s)")

        yield show


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _wire(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    for row in [list(headers), *cells]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


# --- elements -----------------------------------------------------------------------------


@elements_app.command("list")
def elements_list(
    element_type: str | None = typer.Option(
        None, "--type", help="elementType, e.g. ACO, DigitalProvider"
    ),
    subtype: str | None = typer.Option(
        None, "--subtype", help="elementSubType, e.g. ChatConnector"
    ),
    name: str | None = typer.Option(None, "--name", help="Name; * wildcards: 'Avaya*'"),
    filter_: str | None = typer.Option(
        None, "--filter", help="Raw AXP filter, e.g. 'hostname:chat*'"
    ),
    order_by: str | None = typer.Option(None, "--order-by", help="e.g. 'name desc'"),
    as_json: bool = typer.Option(False, "--json", help="Print the elements as JSON"),
) -> None:
    """List every element of the account (all pages): id, type, subtype, name, status."""
    query = _validated(
        lambda: ElementQuery(
            filter=filter_,
            order_by=order_by,
            element_type=element_type,
            element_sub_type=subtype,
            name=name,
        )
    )

    async def work(admin: AxpAdmin) -> None:
        elements = await admin.elements.list(query)
        if as_json:
            _print_json([_wire(e) for e in elements])
            return
        _table(
            ("ID", "TYPE", "SUBTYPE", "NAME", "STATUS"),
            [
                (e.element_id, e.element_type, e.element_sub_type, e.name, e.status)
                for e in elements
            ],
        )

    _run(work)


# --- ACO and MS Teams elements ------------------------------------------------------------


def _element_result(outcome: Outcome[Any], label: str) -> ExitCode:
    element: VoiceElement = outcome.resource
    if outcome.status == "SUCCESS":
        typer.echo(f"{label} {element.element_id} ({element.name}): SUCCESS")
        return ExitCode.OK
    reason = element.status_message or "AXP gave no statusMessage"
    typer.echo(
        f"{label} {element.element_id} ({element.name}): {outcome.status}: {reason}", err=True
    )
    return ExitCode.FAILED


def _show_element(element: VoiceElement, as_json: bool) -> None:
    if as_json:
        _print_json(_wire(element))
        return
    for key, value in _wire(element).items():
        shown = ", ".join(value) if isinstance(value, list) else value
        typer.echo(f"{key}: {shown}")


def _did_changes(add: list[str], remove: list[str]) -> None:
    for number in [*add, *remove]:
        try:
            check_did_number(number)
        except ValueError as exc:
            raise _fail(f"invalid input: didNumbers: {exc}", ExitCode.INVALID_INPUT) from None


def _merged_dids(current: list[str] | None, add: list[str], remove: list[str]) -> list[str] | None:
    if not add and not remove:
        return None
    numbers = list(current or [])
    missing = [n for n in remove if n not in numbers]
    if missing:
        raise InvalidAdminInput(
            f"invalid input: didNumbers: {', '.join(missing)} not on the element"
        )
    numbers = [n for n in numbers if n not in remove]
    return numbers + [n for n in add if n not in numbers]


def _with_dids(changes: Model, dids: list[str] | None) -> Model:
    if dids is None:
        return changes
    values = changes.model_dump(exclude_unset=True)
    return type(changes)(**values, did_numbers=dids)


def _chosen(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


ACO_LABEL = "Avaya Cloud Office element"
MSTEAMS_LABEL = "MS Teams element"
ONE_PER_ACCOUNT = (
    "AXP allows one {what} per account and unique names: this name is taken or one exists"
)


@aco_app.command("create")
def aco_create(
    name: str = typer.Option(..., help="1-255 letters, digits, space, '-', '_', '.'"),
    environment: str = typer.Option(..., help="Production or Development"),
    description: str | None = typer.Option(None),
    did: list[str] = typer.Option([], "--did", help="DID in E.164 (repeat for several)"),
    chat: bool | None = typer.Option(None, "--chat/--no-chat", help="isChatEnabled"),
    extension_calling: bool | None = typer.Option(
        None, "--extension-calling/--no-extension-calling"
    ),
    presence_app: str | None = typer.Option(None, help="AVAYA_CLOUD_OFFICE or AVAYA_CLOUD_PHONE"),
    timeout: float | None = typer.Option(None, help="Seconds to wait for SUCCESS/FAILED"),
) -> None:
    """Create the account's Avaya Cloud Office element and wait until SUCCESS or FAILED."""
    spec = _validated(
        lambda: AcoElementSpec(
            **_chosen(
                name=name,
                environment=environment,
                description=description,
                did_numbers=did or None,
                is_chat_enabled=chat,
                is_extension_calling=extension_calling,
                presence_application_type=presence_app,
            )
        )
    )

    _create_element(lambda admin: admin.aco, ACO_LABEL, spec, name, timeout)


@aco_app.command("update")
def aco_update(
    element_id: str = typer.Argument(..., help="elementId"),
    name: str | None = typer.Option(None),
    environment: str | None = typer.Option(None, help="Production or Development"),
    description: str | None = typer.Option(None),
    add_did: list[str] = typer.Option([], "--add-did", help="DID to add (repeatable)"),
    remove_did: list[str] = typer.Option([], "--remove-did", help="DID to remove (repeatable)"),
    chat: bool | None = typer.Option(None, "--chat/--no-chat"),
    extension_calling: bool | None = typer.Option(
        None, "--extension-calling/--no-extension-calling"
    ),
    presence_app: str | None = typer.Option(None, help="AVAYA_CLOUD_OFFICE or AVAYA_CLOUD_PHONE"),
    timeout: float | None = typer.Option(None, help="Seconds to wait for SUCCESS/FAILED"),
) -> None:
    """Change fields of the ACO element; every other field is re-sent as it is now."""
    _valid_id(element_id, "elementId")
    changes = _validated(
        lambda: AcoElementChanges(
            **_chosen(
                name=name,
                environment=environment,
                description=description,
                is_chat_enabled=chat,
                is_extension_calling=extension_calling,
                presence_application_type=presence_app,
            )
        )
    )
    _update_element(
        lambda admin: admin.aco, ACO_LABEL, element_id, changes, add_did, remove_did, timeout
    )


@msteams_app.command("create")
def msteams_create(
    name: str = typer.Option(..., help="1-255 letters, digits, space, '-', '_', '.'"),
    domain: str | None = typer.Option(None, help="Domain name, e.g. exchange.com"),
    description: str | None = typer.Option(None),
    did: list[str] = typer.Option([], "--did", help="DID in E.164 (repeat for several)"),
    chat: bool | None = typer.Option(None, "--chat/--no-chat", help="isChatEnabled"),
    client_id: str | None = typer.Option(None, help="MS Teams client id"),
    timeout: float | None = typer.Option(None, help="Seconds to wait for SUCCESS/FAILED"),
) -> None:
    """Create the account's MS Teams element and wait until SUCCESS or FAILED."""
    spec = _validated(
        lambda: MsTeamsElementSpec(
            **_chosen(
                name=name,
                domain=domain,
                description=description,
                did_numbers=did or None,
                is_chat_enabled=chat,
                client_id=client_id,
            )
        )
    )

    _create_element(lambda admin: admin.msteams, MSTEAMS_LABEL, spec, name, timeout)


@msteams_app.command("update")
def msteams_update(
    element_id: str = typer.Argument(..., help="elementId"),
    name: str | None = typer.Option(None),
    domain: str | None = typer.Option(None),
    description: str | None = typer.Option(None),
    add_did: list[str] = typer.Option([], "--add-did", help="DID to add (repeatable)"),
    remove_did: list[str] = typer.Option([], "--remove-did", help="DID to remove (repeatable)"),
    chat: bool | None = typer.Option(None, "--chat/--no-chat"),
    client_id: str | None = typer.Option(None),
    timeout: float | None = typer.Option(None, help="Seconds to wait for SUCCESS/FAILED"),
) -> None:
    """Change fields of the MS Teams element; every other field is re-sent as it is now."""
    _valid_id(element_id, "elementId")
    changes = _validated(
        lambda: MsTeamsElementChanges(
            **_chosen(
                name=name,
                domain=domain,
                description=description,
                is_chat_enabled=chat,
                client_id=client_id,
            )
        )
    )
    _update_element(
        lambda admin: admin.msteams,
        MSTEAMS_LABEL,
        element_id,
        changes,
        add_did,
        remove_did,
        timeout,
    )


def _create_element(
    elements_of: Callable[[AxpAdmin], Any],
    label: str,
    spec: Model,
    name: str,
    timeout: float | None,
) -> None:
    async def work(admin: AxpAdmin) -> ExitCode:
        with _spinner(f"creating {label} {name!r}") as show:
            outcome = await elements_of(admin).create(spec, on_status=show, timeout_s=timeout)
        return _element_result(outcome, label)

    _run(work, conflict_hint=ONE_PER_ACCOUNT.format(what=label))


def _update_element(
    elements_of: Callable[[AxpAdmin], Any],
    label: str,
    element_id: str,
    changes: Model,
    add_did: list[str],
    remove_did: list[str],
    timeout: float | None,
) -> None:
    _did_changes(add_did, remove_did)
    if not changes.model_fields_set and not add_did and not remove_did:
        raise _fail(
            "invalid input: nothing to change: give at least one option", ExitCode.INVALID_INPUT
        )

    def apply(current: Any) -> Model:
        return _with_dids(changes, _merged_dids(current.did_numbers, add_did, remove_did))

    async def work(admin: AxpAdmin) -> ExitCode:
        with _spinner(f"updating {label} {element_id}") as show:
            outcome = await elements_of(admin).update(
                element_id, apply, on_status=show, timeout_s=timeout
            )
        return _element_result(outcome, label)

    _run(work, conflict_hint=ONE_PER_ACCOUNT.format(what=label))


def _register_get_and_delete(
    app: typer.Typer, elements_of: Callable[[AxpAdmin], Any], label: str, short: str
) -> None:
    """`get` and `delete`, the same for every voice element kind."""

    @app.command("get", help=f"Show the {short} element.")
    def get(
        element_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")
    ) -> None:
        _valid_id(element_id, "elementId")

        async def work(admin: AxpAdmin) -> None:
            _show_element(await elements_of(admin).get(element_id), as_json)

        _run(work)

    @app.command("delete", help=f"Delete the {short} element (asks first unless --yes).")
    def delete(
        element_id: str = typer.Argument(...),
        yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation"),
    ) -> None:
        _valid_id(element_id, "elementId")
        _run(lambda admin: _delete_element(elements_of(admin), element_id, label, yes))


async def _delete_element(elements: Any, element_id: str, label: str, yes: bool) -> ExitCode:
    if not yes:
        current = await elements.get(element_id)
        if not typer.confirm(f"Delete {label} {element_id} ({current.name})?", default=False):
            typer.echo("cancelled: nothing was deleted", err=True)
            return ExitCode.FAILED
    await elements.delete(element_id)
    typer.echo(f"deleted {label} {element_id}")
    return ExitCode.OK


_register_get_and_delete(aco_app, lambda admin: admin.aco, ACO_LABEL, "ACO")
_register_get_and_delete(msteams_app, lambda admin: admin.msteams, MSTEAMS_LABEL, "MS Teams")


# --- phone numbers ------------------------------------------------------------------------

VERIFICATION_HINT = (
    "the number takes no calls until AXP activates it: send the verification "
    "documents named above, then check with `axp numbers get`"
)


def _number_result(outcome: Outcome[PhoneNumber]) -> ExitCode:
    number = outcome.resource
    who = f"{number.phone_number} ({number.phone_number_id})"
    if outcome.status == "ACTIVE":
        typer.echo(f"{who}: ACTIVE")
        return ExitCode.OK
    reason = number.status_message or "AXP gave no statusMessage"
    if outcome.status == "INACTIVE":
        typer.echo(f"{who}: INACTIVE, verification needed: {reason}; {VERIFICATION_HINT}", err=True)
        return ExitCode.VERIFICATION_NEEDED
    typer.echo(f"{who}: {outcome.status}: {reason}", err=True)
    return ExitCode.FAILED


def _number_rows(numbers: Sequence[PhoneNumber]) -> None:
    _table(
        (
            "ID",
            "NUMBER",
            "COUNTRY",
            "TYPE",
            "STATUS",
            "CALLER ID",
            "DISPLAY NAME",
            "STATUS MESSAGE",
        ),
        [
            (
                n.phone_number_id,
                n.phone_number,
                n.country_code,
                n.type,
                n.status,
                _yes_no(n.is_calling_party_number),
                n.display_name,
                n.status_message,
            )
            for n in numbers
        ],
    )


@numbers_app.command("list")
def numbers_list(
    filter_: str | None = typer.Option(
        None, "--filter", help="e.g. 'countryCode:US', 'status:INACTIVE'"
    ),
    order_by: str | None = typer.Option(None, "--order-by", help="e.g. 'phoneNumber desc'"),
    all_pages: bool = typer.Option(False, "--all", help="Every page, not only the first"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List the account's phone numbers (first page unless --all)."""
    query = _validated(lambda: PhoneNumberQuery(filter=filter_, order_by=order_by))

    async def work(admin: AxpAdmin) -> None:
        if all_pages:
            numbers, total = await admin.numbers.list(query), None
        else:
            page = await admin.numbers.list_page(query)
            numbers, total = page.phone_numbers, page.pagination.total if page.pagination else None
        if as_json:
            _print_json([_wire(n) for n in numbers])
        else:
            _number_rows(numbers)
        if total is not None and total > len(numbers):
            typer.echo(
                f"showing {len(numbers)} of {total} numbers: add --all for every page", err=True
            )

    _run(work)


@numbers_app.command("add")
def numbers_add(
    number: str = typer.Argument(..., help="E.164, e.g. +16479308804"),
    country: str = typer.Option(..., help="Two-letter ISO country code, e.g. US"),
    display_name: str = typer.Option(..., help="Up to 255 characters"),
    calling_party: bool | None = typer.Option(
        None, "--calling-party/--no-calling-party", help="Use as caller id (isCallingPartyNumber)"
    ),
    media_location: str | None = typer.Option(None, help="preferredMediaLocation, e.g. US-LA"),
    timeout: float | None = typer.Option(None, help="Seconds to wait for a final status"),
) -> None:
    """Add a number to the account and wait for ACTIVE, INACTIVE, DISABLED or FAILED."""
    new = _validated(
        lambda: NewPhoneNumber(
            **_chosen(
                phone_number=number,
                country_code=country,
                display_name=display_name,
                is_calling_party_number=calling_party,
                preferred_media_location=media_location,
            )
        )
    )

    async def work(admin: AxpAdmin) -> ExitCode:
        with _spinner(f"adding {number}") as show:
            outcome = await admin.numbers.add(new, on_status=show, timeout_s=timeout)
        return _number_result(outcome)

    _run(work, conflict_hint="the number is already on an account")


@numbers_app.command("get")
def numbers_get(
    phone_number_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")
) -> None:
    """Show one number."""
    _valid_id(phone_number_id, "phoneNumberId")

    async def work(admin: AxpAdmin) -> None:
        number = await admin.numbers.get(phone_number_id)
        if as_json:
            _print_json(_wire(number))
        else:
            for key, value in _wire(number).items():
                typer.echo(f"{key}: {value}")

    _run(work)


@numbers_app.command("update")
def numbers_update(
    phone_number_id: str = typer.Argument(...),
    display_name: str | None = typer.Option(None),
    calling_party: bool | None = typer.Option(None, "--calling-party/--no-calling-party"),
    media_location: str | None = typer.Option(None, help="preferredMediaLocation, e.g. US-LA"),
    timeout: float | None = typer.Option(None, help="Seconds to wait for a final status"),
) -> None:
    """Change a number's settings; the others are re-sent as they are now."""
    _valid_id(phone_number_id, "phoneNumberId")
    changes = _validated(
        lambda: PhoneNumberChanges(
            **_chosen(
                display_name=display_name,
                is_calling_party_number=calling_party,
                preferred_media_location=media_location,
            )
        )
    )
    if not changes.model_fields_set:
        raise _fail(
            "invalid input: nothing to change: give at least one option", ExitCode.INVALID_INPUT
        )

    async def work(admin: AxpAdmin) -> ExitCode:
        with _spinner(f"updating {phone_number_id}") as show:
            outcome = await admin.numbers.update(
                phone_number_id, changes, on_status=show, timeout_s=timeout
            )
        return _number_result(outcome)

    _run(work)


@numbers_app.command("release")
def numbers_release(
    phone_number_id: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation"),
) -> None:
    """Release a number from the account (asks first unless --yes)."""
    _valid_id(phone_number_id, "phoneNumberId")

    async def work(admin: AxpAdmin) -> ExitCode:
        if not yes:
            current = await admin.numbers.get(phone_number_id)
            question = f"Release {current.phone_number} ({current.display_name}) from the account?"
            if not typer.confirm(question, default=False):
                typer.echo("cancelled: nothing was released", err=True)
                return ExitCode.FAILED
        await admin.numbers.release(phone_number_id)
        typer.echo(f"released {phone_number_id}")
        return ExitCode.OK

    _run(work)


@numbers_app.command("available")
def numbers_available(
    country: str = typer.Option(..., help="Two-letter ISO country code, e.g. US"),
    number_type: str = typer.Option(..., "--type", help="LOCAL or TOLLFREE"),
    area_code: str | None = typer.Option(None, help="1-5 characters, e.g. 330"),
    contains: str | None = typer.Option(None, help="Characters the number must contain"),
    page: int = typer.Option(1, min=1, help="Page number"),
    all_pages: bool = typer.Option(False, "--all", help="Every page"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Numbers that can be added, with whether AXP needs verification documents for each."""
    query = _validated(
        lambda: AvailableNumberQuery(
            **_chosen(
                country_code=country,
                type=number_type.strip().upper(),
                area_code=area_code,
                contains=contains,
            )
        )
    )

    async def work(admin: AxpAdmin) -> None:
        total = None
        if all_pages:
            numbers = await admin.numbers.available_all(query)
        else:
            found = await admin.numbers.available(query, page_number=page)
            numbers = found.phone_numbers
            total = found.pagination.total if found.pagination else None
        if as_json:
            _print_json([_wire(n) for n in numbers])
            return
        _table(
            ("NUMBER", "COUNTRY", "TYPE", "DOCUMENTS REQUIRED"),
            [
                (n.phone_number, n.country_code, n.type, _yes_no(n.documentation_required))
                for n in numbers
            ],
        )
        if any(n.documentation_required for n in numbers):
            typer.echo(
                "numbers with DOCUMENTS REQUIRED = yes stay INACTIVE after `add` until "
                "AXP has the verification documents",
                err=True,
            )
        if total is not None and not all_pages:
            typer.echo(
                f"page {page}: {len(numbers)} of {total} numbers (--page N, --all)", err=True
            )

    _run(work)
