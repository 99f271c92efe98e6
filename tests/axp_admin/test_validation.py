"""Input the specs forbid is refused with a clear message and no request at all."""

from __future__ import annotations

import pytest
import respx

from channel_bridge.platforms.axp.admin import AxpAdmin, InvalidAdminInput
from channel_bridge.platforms.axp.admin_schemas import MsTeamsElementChanges, PhoneNumberChanges
from tests.axp_admin.conftest import Invoke, one_line

ID = "c8c2909d-75e9-484a-94c0-b7e8d29771fe"
ADD = ["numbers", "add"]
NAME_256 = "a" * 256

CASES = {
    # E.164: ^\+[1-9]\d{3,13}$
    "number without plus": (
        [*ADD, "16479308804", "--country", "US", "--display-name", "x"],
        "phoneNumber",
    ),
    "number with leading zero": (
        [*ADD, "+06479308804", "--country", "US", "--display-name", "x"],
        "E.164",
    ),
    "number too short": ([*ADD, "+123", "--country", "US", "--display-name", "x"], "E.164"),
    "number too long": (
        [*ADD, "+1234567890123456", "--country", "US", "--display-name", "x"],
        "E.164",
    ),
    "number with spaces": (
        [*ADD, "+1 647 930 8804", "--country", "US", "--display-name", "x"],
        "E.164",
    ),
    # countryCode: ^[A-Z]{2}$
    "country of three letters": (
        [*ADD, "+16479308804", "--country", "USA", "--display-name", "x"],
        "countryCode",
    ),
    "country with a digit": (
        [*ADD, "+16479308804", "--country", "U1", "--display-name", "x"],
        "two-letter",
    ),
    "display name too long": (
        [*ADD, "+16479308804", "--country", "US", "--display-name", NAME_256],
        "displayName",
    ),
    "media location too long": (
        [
            *ADD,
            "+16479308804",
            "--country",
            "US",
            "--display-name",
            "x",
            "--media-location",
            "US-LA-XX",
        ],
        "preferredMediaLocation",
    ),
    "available type": (["numbers", "available", "--country", "US", "--type", "MOBILE"], "type"),
    "available country": (
        ["numbers", "available", "--country", "GBR", "--type", "LOCAL"],
        "countryCode",
    ),
    "available area code": (
        ["numbers", "available", "--country", "US", "--type", "LOCAL", "--area-code", "123456"],
        "areaCode",
    ),
    "available contains": (
        ["numbers", "available", "--country", "US", "--type", "LOCAL", "--contains", "1" * 16],
        "contains",
    ),
    # ACOElement / MSTeamsElement
    "element name characters": (
        ["aco", "create", "--name", "ACO/prod", "--environment", "Production"],
        "name",
    ),
    "element name too long": (["msteams", "create", "--name", NAME_256], "255"),
    "aco environment": (
        ["aco", "create", "--name", "ACO", "--environment", "Staging"],
        "environment",
    ),
    "aco description characters": (
        ["aco", "create", "--name", "ACO", "--environment", "Production", "--description", "no!"],
        "description",
    ),
    "did not e164": (
        ["aco", "create", "--name", "ACO", "--environment", "Production", "--did", "+1"],
        "didNumbers.0",
    ),
    "did too long": (
        ["msteams", "create", "--name", "T", "--did", "+16062128688999"],
        "13 characters",
    ),
    "presence app": (
        [
            "aco",
            "create",
            "--name",
            "ACO",
            "--environment",
            "Production",
            "--presence-app",
            "TEAMS",
        ],
        "presenceApplicationType",
    ),
    "teams domain leading hyphen": (
        ["msteams", "create", "--name", "T", "--domain", "-x.com"],
        "domain",
    ),
    "teams domain without dot": (
        ["msteams", "create", "--name", "T", "--domain", "localhost"],
        "domain",
    ),
    "update did": (["aco", "update", ID, "--add-did", "6062128688"], "didNumbers"),
    "update nothing": (["msteams", "update", ID], "nothing to change"),
    "number update nothing": (["numbers", "update", ID], "nothing to change"),
    # ids: 36-character UUIDs
    "element id": (["aco", "get", "ACO-1"], "elementId"),
    "element id traversal": (["msteams", "delete", "../../phone-numbers", "--yes"], "elementId"),
    "number id": (["numbers", "release", "not-an-id", "--yes"], "phoneNumberId"),
    # filters
    "name with comma": (["elements", "list", "--name", "a,b"], "name"),
    "filter too long": (["elements", "list", "--filter", "x" * 256], "filter"),
    "element type": (["elements", "list", "--type", "ACO;DROP"], "elementType"),
    "number filter too long": (["numbers", "list", "--filter", "x" * 256], "filter"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_input_sends_no_request(run_cli: Invoke, axp: respx.MockRouter, case: str) -> None:
    args, named = CASES[case]
    catch_all = axp.route().respond(500)

    result = run_cli(*args)

    assert result.exit_code == 2, result.output
    line = one_line(result.stderr)
    assert line.startswith("invalid input:") and named in line
    assert not catch_all.called and axp.calls.call_count == 0


async def test_python_api_checks_ids_before_sending(admin: AxpAdmin, axp: respx.MockRouter) -> None:
    catch_all = axp.route().respond(500)
    with pytest.raises(InvalidAdminInput, match="phone number id"):
        await admin.numbers.get("../elements")
    with pytest.raises(InvalidAdminInput, match="element id"):
        await admin.aco.delete("x")
    with pytest.raises(InvalidAdminInput, match="nothing to change"):
        await admin.msteams.update(ID, MsTeamsElementChanges())
    with pytest.raises(InvalidAdminInput, match="nothing to change"):
        await admin.numbers.update(ID, PhoneNumberChanges())
    assert not catch_all.called


def test_account_id_is_checked() -> None:
    import httpx

    with pytest.raises(InvalidAdminInput, match="6 letters"):
        AxpAdmin(httpx.AsyncClient(), "ABC123")
