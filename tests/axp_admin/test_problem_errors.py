"""AXP problem+json answers become one readable line and a distinct exit code."""

from __future__ import annotations

import pytest
import respx

from tests.axp_admin.conftest import INVENTORY, VOICE, Invoke, example, one_line

ID = "c8c2909d-75e9-484a-94c0-b7e8d29771fe"
PROBLEM = {"content-type": "application/problem+json"}


@pytest.mark.parametrize(
    ("status", "spec", "name", "args", "path", "expected", "exit_code"),
    [
        (
            400,
            "phone-numbers",
            "ErrorConstraintViolation",
            ["numbers", "list"],
            "phone-numbers",
            [
                "HTTP 400 Constraint Violation",
                "semantic errors",
                'accountId: must match "^[a-zA-Z]{6}$" (20006)',
            ],
            3,
        ),
        (
            403,
            "element-inventory",
            "ErrorForbidden",
            ["elements", "list"],
            "elements",
            ["HTTP 403 Forbidden", "does not have permission"],
            3,
        ),
        (
            404,
            "aco-elements",
            "ErrorNotFound",
            ["aco", "get", ID],
            f"aco-elements/{ID}",
            ["HTTP 404 Resource Not Found", "not found"],
            3,
        ),
        (
            409,
            "phone-numbers",
            "ErrorPhoneNumberExists",
            [
                "numbers",
                "add",
                "+16479308804",
                "--country",
                "US",
                "--display-name",
                "private Number",
            ],
            "phone-numbers",
            [
                "conflict:",
                "HTTP 409 Conflict",
                "phoneNumber: Number already exists",
                "already on an account",
            ],
            6,
        ),
    ],
)
def test_problem_is_one_readable_line(
    run_cli: Invoke,
    axp: respx.MockRouter,
    status: int,
    spec: str,
    name: str,
    args: list[str],
    path: str,
    expected: list[str],
    exit_code: int,
) -> None:
    base = INVENTORY if spec == "element-inventory" else VOICE
    axp.route(url=f"{base}/{path}").respond(status, json=example(spec, name), headers=PROBLEM)

    result = run_cli(*args)

    assert result.exit_code == exit_code
    line = one_line(result.stderr)
    for text in expected:
        assert text in line
    assert result.stdout == ""


def test_a_non_json_error_body_is_still_one_line(run_cli: Invoke, axp: respx.MockRouter) -> None:
    axp.get(f"{VOICE}/phone-numbers/{ID}").respond(502, text="<html>\n<b>Bad gateway</b>\n</html>")

    result = run_cli("numbers", "get", ID)

    assert result.exit_code == 3
    assert "HTTP 502" in one_line(result.stderr)
