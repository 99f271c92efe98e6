"""The akixi.upsert and akixi.delete handlers against the simulator, and their registration.

Two ways to find our entry: by its Description tag with Akixi assigning UniqueIDs (the
default: seed 001 allows only the system-wide administrator to set them), or by the UniqueID
we set (BRIDGE_AKIXI_SEND_UNIQUE_ID=true).
"""

from __future__ import annotations

import httpx
import pytest

from channel_bridge.platforms.akixi.client import AkixiClient
from channel_bridge.platforms.akixi.mirror import akixi_destinations
from channel_bridge.relay.errors import PermanentError, RetryableError
from channel_bridge.sandbox.akixi import SEED_PARTITION_GUID, AkixiSimulator
from tests.akixi.conftest import akixi_settings
from tests.conftest import make_settings, running_app
from tests.support.destinations import call_destination

UPSERT, DELETE = "akixi.upsert", "akixi.delete"
ADVANCED_AS_IN_THE_SEED = {
    "APICommsLoggingEnabled": "False",
    "APICommsLoggingIncClassNames": "False",
    "InternalDiagDumpEnabled": "False",
}
# The seed's LiveChat example values.
LIVECHAT = {
    "akixi_auth_user_id1": "2ty3m6f2a05297e5bbnb7b327n1afbd6",
    "akixi_auth_password1": "C4gRIuo7ZTdpW/2LejGDLfpt0N+e2YhHBa0PehmQV8s=",
    "akixi_auth_password2": "YhHGDZTdp0PehmQ4gLfWV8sCBapt0Iuo7R/2LejN+e2=",
}


class Handlers:
    """The two destinations by name, called as the worker calls them."""

    def __init__(self, client: AkixiClient, settings) -> None:
        self._by_name = {d.name: d for d in akixi_destinations(client, settings)}

    async def __call__(self, name: str, payload: dict, delivery_id: int = 1) -> dict | None:
        return await call_destination(self._by_name[name], payload, delivery_id=delivery_id)


def _created(integration_id: str = "int-1", name: str = "Sales") -> dict:
    # The shape mappings/service.py queues.
    return {
        "action": "created",
        "created": True,
        "integration_id": integration_id,
        "name": name,
        "account_id": "ACC1",
        "channel_provider_id": "cp-1",
        "changed": ["account_id", "channel_provider_id", "name"],
    }


def _updated(changed: list[str], name: str = "Sales") -> dict:
    return {**_created(name=name), "action": "updated", "created": False, "changed": changed}


def _deleted(name: str = "Sales") -> dict:
    return {"integration_id": "int-1", "name": name, "account_id": "ACC1"}


def _handlers(akixi_http: httpx.AsyncClient, **overrides: object) -> Handlers:
    settings = akixi_settings(**overrides)
    return Handlers(AkixiClient(akixi_http, settings), settings)


def _successful(simulator: AkixiSimulator) -> list:
    return [
        call
        for call in simulator.log
        if call.result == "Success" and call.operation not in ("CreateSession", "Authenticate")
    ]


@pytest.fixture
def handlers(akixi_http: httpx.AsyncClient) -> Handlers:
    return _handlers(akixi_http)


@pytest.fixture
def unique_id_handlers(akixi_http: httpx.AsyncClient) -> Handlers:
    return _handlers(akixi_http, akixi_send_unique_id=True)


# --- the default: Akixi assigns UniqueIDs, our entries carry a Description tag ---------------


async def test_create_update_delete_finds_the_entry_by_its_tag(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    simulator.accepts_unique_id = False  # an account that may not set UniqueIDs
    simulator.add_entry("LiveChat5918734", description="Someone else's")
    created = await handlers(UPSERT, _created())
    assert created == {"unique_id": None, "operations": ["OmnichannelIntList", "OmnichannelIntAdd"]}
    [assigned] = [uid for uid in simulator.entries if uid != "LiveChat5918734"]
    simulator.expire_sessions()  # the session times out between deliveries
    updated = await handlers(UPSERT, _updated(["name"], name="Sales EU"), 2)
    assert updated["unique_id"] == assigned
    deleted = await handlers(DELETE, _deleted(name="Sales EU"), 3)
    assert deleted["operations"] == [
        "OmnichannelIntList",
        "OmnichannelIntChange",
        "OmnichannelIntDelete",
    ]

    calls = [c for c in _successful(simulator) if c.operation != "OmnichannelIntList"]
    assert [c.operation for c in calls] == [
        "OmnichannelIntAdd",
        "OmnichannelIntChange",
        "OmnichannelIntChange",
        "OmnichannelIntDelete",
    ]
    add, rename, disable, delete = (call.payload for call in calls)
    assert add == {
        "PartitionGUID": SEED_PARTITION_GUID,
        "IntegrationType": "LiveChat",
        "Description": "Sales [axp-int-1]",
        # No LiveChat credentials configured: Akixi is not asked to connect.
        "APICommunicationSettings": {"CommsEnabled": "False"},
        "Advanced": ADVANCED_AS_IN_THE_SEED,
    }
    # A Change sends the seed's full set, not only the renamed Description.
    assert rename == {
        "UniqueID": assigned,
        "PartitionGUID": SEED_PARTITION_GUID,
        "Description": "Sales EU [axp-int-1]",
        "APICommunicationSettings": {"CommsEnabled": "False"},
        "Advanced": ADVANCED_AS_IN_THE_SEED,
    }
    assert disable == {**rename, "APICommunicationSettings": {"CommsEnabled": "False"}}
    assert delete == {"UniqueID": assigned}
    assert len(simulator.calls("Authenticate")) == 2  # one re-login for the expired session
    assert list(simulator.entries) == ["LiveChat5918734"]  # someone else's entry untouched


async def test_replayed_create_and_delete_converge(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    first = await handlers(UPSERT, _created())
    again = await handlers(UPSERT, _created())
    assert first["operations"] == ["OmnichannelIntList", "OmnichannelIntAdd"]
    assert again["operations"] == ["OmnichannelIntList", "OmnichannelIntChange"]
    assert again["existed"] is True and len(simulator.entries) == 1
    for _ in range(2):
        await handlers(DELETE, _deleted())
    assert simulator.entries == {}


async def test_update_of_a_missing_entry_adds_it(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    result = await handlers(UPSERT, _updated(["name"], name="Late"))
    assert result["operations"] == ["OmnichannelIntList", "OmnichannelIntAdd"]
    [entry] = simulator.entries.values()
    assert entry["Description"] == "Late [axp-int-1]"


async def test_delete_of_an_absent_entry_is_done(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    result = await handlers(DELETE, {"integration_id": "gone"})
    assert result["already_absent"] is True
    assert simulator.operations() == ["OmnichannelIntList"]


async def test_an_entry_listed_without_unique_id_cannot_be_changed(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    """The seed's List answer carries no UniqueID: create works, change and delete say why not."""
    simulator.list_unique_ids = False
    await handlers(UPSERT, _created())
    again = await handlers(UPSERT, _created())  # a retry finds the entry and leaves it
    assert again["existed"] is True and len(simulator.entries) == 1
    for name, payload in ((UPSERT, _updated(["name"], name="New")), (DELETE, _deleted())):
        with pytest.raises(PermanentError, match="BRIDGE_AKIXI_SEND_UNIQUE_ID"):
            await handlers(name, payload)
    assert "OmnichannelIntChange" not in simulator.operations()


async def test_livechat_credentials_are_sent_and_enable_comms(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    handlers = _handlers(akixi_http, **LIVECHAT)
    await handlers(UPSERT, _created())
    add = simulator.calls("OmnichannelIntAdd")[0].payload
    assert add["APICommunicationSettings"] == {
        "AuthUserID1": LIVECHAT["akixi_auth_user_id1"],
        "AuthPassword1": "***",  # the simulator's log masks passwords; the entry has them
        "AuthPassword2": "***",
        "CommsEnabled": "True",
    }
    [entry] = simulator.entries.values()
    assert entry["APICommunicationSettings"]["AuthPassword1"] == LIVECHAT["akixi_auth_password1"]


@pytest.mark.parametrize(
    ("overrides", "comms"),
    [
        ({}, "False"),
        ({"akixi_auth_user_id1": "user-only"}, "False"),
        (LIVECHAT, "True"),
        ({**LIVECHAT, "akixi_comms_enabled": False}, "False"),
        ({"akixi_comms_enabled": True}, "True"),
    ],
)
async def test_comms_enabled_follows_the_credentials_unless_set(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator, overrides: dict, comms: str
) -> None:
    await _handlers(akixi_http, **overrides)(UPSERT, _created())
    add = simulator.calls("OmnichannelIntAdd")[0].payload
    assert add["APICommunicationSettings"]["CommsEnabled"] == comms


async def test_advanced_container_comes_from_the_settings(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    handlers = _handlers(
        akixi_http, akixi_api_comms_logging_enabled=True, akixi_internal_diag_dump_enabled=True
    )
    await handlers(UPSERT, _created())
    assert simulator.calls("OmnichannelIntAdd")[0].payload["Advanced"] == {
        "APICommsLoggingEnabled": "True",
        "APICommsLoggingIncClassNames": "False",
        "InternalDiagDumpEnabled": "True",
    }


async def test_description_format_setting(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    handlers = _handlers(akixi_http, akixi_description_format="AXP {key}: {name}")
    await handlers(UPSERT, _created())
    await handlers(UPSERT, _updated(["name"], name="Support"))
    [entry] = simulator.entries.values()
    assert entry["Description"] == "AXP axp-int-1: Support"


# --- BRIDGE_AKIXI_SEND_UNIQUE_ID=true: our own UniqueIDs --------------------------------------


async def test_with_our_unique_ids_create_update_delete_is_add_change_change_delete(
    unique_id_handlers: Handlers, simulator: AkixiSimulator
) -> None:
    created = await unique_id_handlers(UPSERT, _created())
    assert created == {"unique_id": "axp-int-1", "operations": ["OmnichannelIntAdd"]}
    await unique_id_handlers(UPSERT, _updated(["name"], name="Sales EU"), 2)
    deleted = await unique_id_handlers(DELETE, _deleted("Sales EU"), 3)
    assert deleted["operations"] == ["OmnichannelIntChange", "OmnichannelIntDelete"]
    assert "OmnichannelIntList" not in simulator.operations()
    add, rename, disable, delete = (call.payload for call in _successful(simulator))
    assert add["UniqueID"] == "axp-int-1" and add["Description"] == "Sales [axp-int-1]"
    assert rename == {
        "UniqueID": "axp-int-1",
        "PartitionGUID": SEED_PARTITION_GUID,
        "Description": "Sales EU [axp-int-1]",
        "APICommunicationSettings": {"CommsEnabled": "False"},
        "Advanced": ADVANCED_AS_IN_THE_SEED,
    }
    assert disable == rename
    assert delete == {"UniqueID": "axp-int-1"}
    assert simulator.entries == {}


async def test_add_of_an_existing_entry_switches_to_change(
    unique_id_handlers: Handlers, simulator: AkixiSimulator
) -> None:
    simulator.add_entry("axp-int-1", description="Old name", comms_enabled=True)
    result = await unique_id_handlers(UPSERT, _created(name="Sales"))
    assert result["operations"] == ["OmnichannelIntAdd", "OmnichannelIntChange"]
    assert simulator.calls("OmnichannelIntAdd")[0].code == 12000
    change = simulator.calls("OmnichannelIntChange")[0]
    assert change.payload["Description"] == "Sales [axp-int-1]"
    assert change.payload["Advanced"] == ADVANCED_AS_IN_THE_SEED
    entry = simulator.entries["axp-int-1"]
    assert entry["Description"] == "Sales [axp-int-1]"
    assert entry["APICommunicationSettings"]["CommsEnabled"] == "False"


async def test_change_of_a_missing_entry_adds_it(
    unique_id_handlers: Handlers, simulator: AkixiSimulator
) -> None:
    result = await unique_id_handlers(UPSERT, _updated(["name"], name="Late"))
    assert result["operations"] == ["OmnichannelIntChange", "OmnichannelIntAdd"]
    assert simulator.entries["axp-int-1"]["Description"] == "Late [axp-int-1]"


async def test_delete_of_an_absent_unique_id_is_done(
    unique_id_handlers: Handlers, simulator: AkixiSimulator
) -> None:
    result = await unique_id_handlers(DELETE, {"integration_id": "gone"})
    assert result["already_absent"] is True
    assert simulator.operations() == ["OmnichannelIntChange"]
    assert simulator.calls("OmnichannelIntChange")[0].code == 12002


async def test_an_account_that_may_not_set_unique_ids_refuses_the_add(
    unique_id_handlers: Handlers, simulator: AkixiSimulator
) -> None:
    simulator.accepts_unique_id = False
    with pytest.raises(PermanentError):
        await unique_id_handlers(UPSERT, _created())
    assert simulator.calls("OmnichannelIntAdd")[0].code == 10514


async def test_telephony_server_scope_and_prefix_settings(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    handlers = _handlers(
        akixi_http,
        akixi_partition_guid=None,
        akixi_telsys_id="100100",
        akixi_part_id_in_telsys="2",
        akixi_unique_id_prefix="cb-",
        akixi_send_unique_id=True,
    )
    await handlers(UPSERT, _created(name=""))
    add = simulator.calls("OmnichannelIntAdd")[0].payload
    assert add["UniqueID"] == "cb-int-1" and "PartitionGUID" not in add
    assert (add["TelSysID"], add["PartIDInTelSys"]) == ("100100", "2")
    assert add["Description"] == "int-1 [cb-int-1]"  # a nameless integration shows its id


async def test_both_partition_scopes_are_sent_as_in_the_seed(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    handlers = _handlers(akixi_http, akixi_telsys_id="100100", akixi_part_id_in_telsys="2")
    await handlers(UPSERT, _created())
    add = simulator.calls("OmnichannelIntAdd")[0].payload
    assert list(add)[:3] == ["PartitionGUID", "TelSysID", "PartIDInTelSys"]


# --- both ways ------------------------------------------------------------------------------


async def test_unmirrored_changes_make_no_call(
    handlers: Handlers, unique_id_handlers: Handlers, simulator: AkixiSimulator
) -> None:
    for each in (handlers, unique_id_handlers):
        result = await each(UPSERT, _updated(["account_id"]))
        assert result["skipped"] and result["operations"] == []
    assert simulator.log == []


async def test_akixi_down_propagates_as_retryable(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    simulator.down = True
    with pytest.raises(RetryableError):
        await handlers(UPSERT, _created())
    simulator.down = False
    await handlers(UPSERT, _created())
    assert len(simulator.entries) == 1


async def test_payload_without_integration_id_is_permanent(handlers: Handlers) -> None:
    with pytest.raises(PermanentError, match="integration_id"):
        await handlers(DELETE, {})


async def test_sandbox_app_registers_handlers_on_the_simulator(database_url: str, engine) -> None:
    async with running_app(make_settings(database_url, sandbox=True)) as (app, _client):
        simulator = app.state_now.akixi_simulator
        assert simulator is not None
        upsert = app.state_now.destinations.get(UPSERT)
        assert upsert is not None and app.state_now.destinations.get(DELETE) is not None
        await call_destination(upsert, _created())
        [entry] = simulator.entries.values()
        assert entry["Description"] == "Sales [axp-int-1]"


async def test_configured_app_registers_handlers_without_a_simulator(
    database_url: str, engine
) -> None:
    settings = make_settings(
        database_url,
        akixi_url="https://akixi.example.net/CCS/WS",
        akixi_user="admin",
        akixi_password="pw-123456",
        akixi_partition_guid=SEED_PARTITION_GUID,
    )
    async with running_app(settings) as (app, _client):
        assert app.state_now.akixi_simulator is None
        assert {UPSERT, DELETE} <= set(app.state_now.destinations.names())


async def test_unconfigured_app_registers_nothing(database_url: str, engine) -> None:
    async with running_app(make_settings(database_url)) as (app, _client):
        assert app.state_now.destinations.get(UPSERT) is None


@pytest.mark.parametrize(
    ("payload", "created"),
    [
        ({"changed": ["created"]}, True),
        ({"changed": ["name"]}, False),
        ({}, True),
        ({"action": "updated", "changed": ["name"]}, False),
        ({"created": False, "changed": ["created", "name"]}, False),
    ],
)
async def test_create_or_update_decision_without_the_flag(
    unique_id_handlers: Handlers, simulator: AkixiSimulator, payload: dict, created: bool
) -> None:
    await unique_id_handlers(UPSERT, {"integration_id": "int-1", "name": "Sales", **payload})
    first = simulator.operations()[0]
    assert first == ("OmnichannelIntAdd" if created else "OmnichannelIntChange")
