"""ACO and MS Teams elements: 202, then polling GET by id to SUCCESS/FAILED; safe full updates."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from channel_bridge.platforms.axp.admin import AxpAdmin, ProvisioningTimeout
from channel_bridge.platforms.axp.admin_schemas import AcoElementChanges, AcoElementSpec
from tests.axp_admin.conftest import VOICE, FakeClock, Invoke, body_of, example, one_line

ACO_ID = "c8c2909d-75e9-484a-94c0-b7e8d29771fe"  # ACOResponse.elementId
TEAMS_ID = "c8c2909d-75e9-484a-94c0-b7e8d29771fe"  # MSTeamsResponse.elementId
FAILURE = "cannot create element due to database failure"  # ACOElement.statusMessage example

# CLI options equal to each spec's request example.
ACO_CREATE_ARGS = [
    "--name",
    "Avaya Cloud Office",
    "--environment",
    "Production",
    "--description",
    "Avaya Cloud Office Description",
    "--did",
    "+16062128688",
    "--did",
    "+12702289911",
    "--chat",
    "--no-extension-calling",
    "--presence-app",
    "AVAYA_CLOUD_OFFICE",
]
TEAMS_CREATE_ARGS = [
    "--name",
    "MS Teams Server",
    "--description",
    "MS Teams Server description",
    "--did",
    "+16062128688",
    "--did",
    "+12702289911",
    "--domain",
    "exchange.com",
    "--no-chat",
    "--client-id",
    "bv34503f-543e-232a-43ac-77e2b25797ea",
]

KINDS = {
    "aco": ("aco-elements", "ACORequest", "ACOResponse", ACO_CREATE_ARGS, ACO_ID),
    "msteams": (
        "msteams-elements",
        "MSTeamsRequest",
        "MSTeamsResponse",
        TEAMS_CREATE_ARGS,
        TEAMS_ID,
    ),
}


def response(kind: str, **changes: object) -> dict:
    spec, _req, resp, _args, _id = KINDS[kind]
    return example(spec, resp, **changes)


@pytest.mark.parametrize("kind", ["aco", "msteams"])
@pytest.mark.parametrize(("terminal", "exit_code"), [("SUCCESS", 0), ("FAILED", 1)])
def test_create_polls_in_progress_to_terminal_status(
    run_cli: Invoke,
    axp: respx.MockRouter,
    clock: FakeClock,
    kind: str,
    terminal: str,
    exit_code: int,
) -> None:
    spec, request_example, _resp, args, element_id = KINDS[kind]
    created = axp.post(f"{VOICE}/{spec}").respond(202, json=response(kind, status="IN_PROGRESS"))
    final = response(kind, status=terminal)
    if terminal == "FAILED":
        final["statusMessage"] = FAILURE
    polled = axp.get(f"{VOICE}/{spec}/{element_id}").mock(
        side_effect=[
            httpx.Response(200, json=response(kind, status="IN_PROGRESS")),
            httpx.Response(200, json=response(kind, status="IN_PROGRESS")),
            httpx.Response(200, json=final),
        ]
    )

    result = run_cli(kind, "create", *args)

    assert result.exit_code == exit_code, result.output
    assert body_of(created.calls.last) == example(spec, request_example)
    assert polled.call_count == 3
    assert clock.sleeps == [1.0, 2.0, 4.0]  # exponential intervals between the polls
    if terminal == "SUCCESS":
        assert f"{element_id}" in result.stdout and "SUCCESS" in result.stdout
    else:
        line = one_line(result.stderr)
        assert "FAILED" in line and FAILURE in line


def test_accept_answer_status_is_not_trusted(run_cli: Invoke, axp: respx.MockRouter) -> None:
    """The spec's 202 example already says SUCCESS; only GET by id decides the outcome."""
    axp.post(f"{VOICE}/aco-elements").respond(202, json=response("aco"))  # status SUCCESS
    polled = axp.get(f"{VOICE}/aco-elements/{ACO_ID}").respond(
        200, json=response("aco", status="FAILED", statusMessage=FAILURE)
    )

    result = run_cli("aco", "create", *ACO_CREATE_ARGS)

    assert polled.call_count == 1
    assert result.exit_code == 1 and FAILURE in result.stderr


def test_polling_stops_at_the_timeout_with_a_clear_error(
    run_cli: Invoke, axp: respx.MockRouter, clock: FakeClock
) -> None:
    axp.post(f"{VOICE}/aco-elements").respond(202, json=response("aco", status="IN_PROGRESS"))
    polled = axp.get(f"{VOICE}/aco-elements/{ACO_ID}").respond(
        200, json=response("aco", status="IN_PROGRESS")
    )

    result = run_cli("aco", "create", *ACO_CREATE_ARGS, "--timeout", "10")

    assert result.exit_code == 5
    assert clock.sleeps == [1.0, 2.0, 4.0, 3.0]  # the last sleep ends at the deadline
    assert polled.call_count == 4
    line = one_line(result.stderr)
    assert "timeout" in line and ACO_ID in line and "after 10 s" in line
    assert "last status IN_PROGRESS" in line


def test_transient_errors_while_polling_are_retried(
    run_cli: Invoke, axp: respx.MockRouter, clock: FakeClock
) -> None:
    axp.post(f"{VOICE}/msteams-elements").respond(
        202, json=response("msteams", status="IN_PROGRESS")
    )
    polled = axp.get(f"{VOICE}/msteams-elements/{TEAMS_ID}").mock(
        side_effect=[
            httpx.Response(
                503, json=example("msteams-elements", "ErrorInternalServerError", status=503)
            ),
            httpx.ConnectError("connection reset"),
            httpx.Response(200, json=response("msteams", status="SUCCESS")),
        ]
    )

    result = run_cli("msteams", "create", *TEAMS_CREATE_ARGS)

    assert result.exit_code == 0, result.output
    assert polled.call_count == 3


def test_not_found_while_polling_stops_at_once(run_cli: Invoke, axp: respx.MockRouter) -> None:
    axp.post(f"{VOICE}/aco-elements").respond(202, json=response("aco", status="IN_PROGRESS"))
    polled = axp.get(f"{VOICE}/aco-elements/{ACO_ID}").respond(
        404, json=example("aco-elements", "ErrorNotFound")
    )

    result = run_cli("aco", "create", *ACO_CREATE_ARGS)

    assert result.exit_code == 3 and polled.call_count == 1
    assert "Resource Not Found" in one_line(result.stderr)


@pytest.mark.parametrize("kind", ["aco", "msteams"])
def test_update_sends_the_full_current_element_plus_the_change(
    run_cli: Invoke, axp: respx.MockRouter, kind: str
) -> None:
    spec, _req, _resp, _args, element_id = KINDS[kind]
    current = response(kind)
    # A field our model does not know must survive the replacement too.
    current["sipServerHostName"] = "sip://platform.ringcentral.com/restapi/v1"
    axp.get(f"{VOICE}/{spec}/{element_id}").mock(
        side_effect=[
            httpx.Response(200, json=current),
            httpx.Response(200, json=response(kind, status="IN_PROGRESS", description="Renamed")),
            httpx.Response(200, json=response(kind, status="SUCCESS", description="Renamed")),
        ]
    )
    replaced = axp.put(f"{VOICE}/{spec}/{element_id}").respond(
        202, json=response(kind, status="IN_PROGRESS")
    )

    result = run_cli(
        kind,
        "update",
        element_id,
        "--description",
        "Renamed",
        "--add-did",
        "+12025550123",
        "--remove-did",
        "+12702289911",
    )

    assert result.exit_code == 0, result.output
    expected = {
        k: v
        for k, v in current.items()
        if k not in {"elementId", "elementType", "status", "statusMessage"}
    }
    expected["description"] = "Renamed"
    expected["didNumbers"] = ["+16062128688", "+12025550123"]
    assert body_of(replaced.calls.last) == expected


def test_update_refuses_to_remove_a_did_the_element_does_not_have(
    run_cli: Invoke, axp: respx.MockRouter
) -> None:
    axp.get(f"{VOICE}/aco-elements/{ACO_ID}").respond(200, json=response("aco"))
    replaced = axp.put(f"{VOICE}/aco-elements/{ACO_ID}")

    result = run_cli("aco", "update", ACO_ID, "--remove-did", "+19999999999")

    assert result.exit_code == 2
    assert "+19999999999" in one_line(result.stderr)
    assert not replaced.called


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("aco", "An Avaya Cloud Office with this name already exists"),
        ("msteams", "A MS Teams with this name already exists"),
    ],
)
def test_conflict_is_reported_as_such(
    run_cli: Invoke, axp: respx.MockRouter, kind: str, message: str
) -> None:
    spec, _req, _resp, args, _id = KINDS[kind]
    error = "ErrorACOExists" if kind == "aco" else "ErrorMSTeamsExists"
    axp.post(f"{VOICE}/{spec}").respond(
        409, json=example(spec, error), headers={"content-type": "application/problem+json"}
    )

    result = run_cli(kind, "create", *args)

    assert result.exit_code == 6
    line = one_line(result.stderr)
    assert line.startswith("conflict:") and "HTTP 409 Conflict" in line
    assert f"name: {message}" in line and "one" in line


def test_delete_asks_first_and_sends_nothing_when_declined(
    run_cli: Invoke, axp: respx.MockRouter
) -> None:
    axp.get(f"{VOICE}/aco-elements/{ACO_ID}").respond(200, json=response("aco"))
    deleted = axp.delete(f"{VOICE}/aco-elements/{ACO_ID}").respond(204)

    declined = run_cli("aco", "delete", ACO_ID, input="n\n")
    assert declined.exit_code == 1 and not deleted.called
    assert "Avaya Cloud Office" in declined.output  # the prompt names the element

    confirmed = run_cli("aco", "delete", ACO_ID, input="y\n")
    assert confirmed.exit_code == 0 and deleted.call_count == 1


def test_delete_with_yes(run_cli: Invoke, axp: respx.MockRouter) -> None:
    deleted = axp.delete(f"{VOICE}/msteams-elements/{TEAMS_ID}").respond(204)
    result = run_cli("msteams", "delete", TEAMS_ID, "--yes")
    assert result.exit_code == 0 and deleted.call_count == 1


def test_get_prints_the_element_as_json(run_cli: Invoke, axp: respx.MockRouter) -> None:
    axp.get(f"{VOICE}/msteams-elements/{TEAMS_ID}").respond(200, json=response("msteams"))
    result = run_cli("msteams", "get", TEAMS_ID, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == response("msteams")


async def test_python_api_create_and_update(admin: AxpAdmin, axp: respx.MockRouter) -> None:
    axp.post(f"{VOICE}/aco-elements").respond(202, json=response("aco", status="IN_PROGRESS"))
    axp.get(f"{VOICE}/aco-elements/{ACO_ID}").respond(200, json=response("aco", status="SUCCESS"))
    seen: list[str | None] = []

    outcome = await admin.aco.create(
        AcoElementSpec(name="Avaya Cloud Office", environment="Production"),
        on_status=lambda status, _elapsed: seen.append(status),
    )

    assert outcome.status == "SUCCESS" and outcome.resource.element_id == ACO_ID
    assert seen == ["IN_PROGRESS", "SUCCESS"]

    put = axp.put(f"{VOICE}/aco-elements/{ACO_ID}").respond(202, json=response("aco"))
    await admin.aco.update(ACO_ID, AcoElementChanges(environment="Development"))
    sent = body_of(put.calls.last)
    assert sent["environment"] == "Development" and sent["name"] == "Avaya Cloud Office"
    assert sent["didNumbers"] == ["+16062128688", "+12702289911"]


async def test_python_api_timeout_raises(
    admin: AxpAdmin, axp: respx.MockRouter, clock: FakeClock
) -> None:
    axp.post(f"{VOICE}/aco-elements").respond(202, json=response("aco", status="IN_PROGRESS"))
    axp.get(f"{VOICE}/aco-elements/{ACO_ID}").respond(
        200, json=response("aco", status="IN_PROGRESS")
    )

    with pytest.raises(ProvisioningTimeout) as raised:
        await admin.aco.create(AcoElementSpec(name="ACO", environment="Production"), timeout_s=30)

    assert raised.value.last_status == "IN_PROGRESS" and raised.value.waited_s == 30
    assert sum(clock.sleeps) == 30 and max(clock.sleeps) == 8.0  # capped intervals
