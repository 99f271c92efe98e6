"""The akixi.upsert and akixi.delete handlers against the simulator, and their registration."""

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


@pytest.fixture
def handlers(client: AkixiClient) -> Handlers:
    return Handlers(client, akixi_settings())


async def test_create_update_delete_is_add_change_change_delete(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    created = await handlers(UPSERT, _created())
    assert created == {"unique_id": "axp-int-1", "operations": ["OmnichannelIntAdd"]}
    simulator.expire_sessions()  # the session times out between deliveries
    await handlers(UPSERT, _updated(["name"], name="Sales EU"), 2)
    deleted = await handlers(DELETE, {"integration_id": "int-1"}, 3)
    assert deleted["operations"] == ["OmnichannelIntChange", "OmnichannelIntDelete"]

    successful = [
        call
        for call in simulator.log
        if call.result == "Success" and call.operation not in ("CreateSession", "Authenticate")
    ]
    assert [call.operation for call in successful] == [
        "OmnichannelIntAdd",
        "OmnichannelIntChange",
        "OmnichannelIntChange",
        "OmnichannelIntDelete",
    ]
    add, rename, disable, delete = (call.payload for call in successful)
    assert add == {
        "UniqueID": "axp-int-1",
        "PartitionGUID": SEED_PARTITION_GUID,
        "IntegrationType": "LiveChat",
        "Description": "Sales",
        "APICommunicationSettings": {"CommsEnabled": "True"},
    }
    assert rename == {"UniqueID": "axp-int-1", "Description": "Sales EU"}
    assert disable == {
        "UniqueID": "axp-int-1",
        "APICommunicationSettings": {"CommsEnabled": "False"},
    }
    assert delete == {"UniqueID": "axp-int-1"}
    # Exactly one re-authentication for the expired session.
    assert len(simulator.calls("Authenticate")) == 2
    assert simulator.entries == {}


async def test_add_of_an_existing_entry_switches_to_change(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    simulator.add_entry("axp-int-1", description="Old name", comms_enabled=False)
    result = await handlers(UPSERT, _created(name="Sales"))
    assert result["operations"] == ["OmnichannelIntAdd", "OmnichannelIntChange"]
    assert simulator.calls("OmnichannelIntAdd")[0].code == 12000
    change = simulator.calls("OmnichannelIntChange")[0]
    assert change.payload == {
        "UniqueID": "axp-int-1",
        "Description": "Sales",
        "APICommunicationSettings": {"CommsEnabled": "True"},
    }
    entry = simulator.entries["axp-int-1"]
    assert (
        entry["Description"] == "Sales"
        and entry["APICommunicationSettings"]["CommsEnabled"] == "True"
    )


async def test_change_of_a_missing_entry_adds_it(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    result = await handlers(UPSERT, _updated(["name"], name="Late"))
    assert result["operations"] == ["OmnichannelIntChange", "OmnichannelIntAdd"]
    assert simulator.entries["axp-int-1"]["Description"] == "Late"


async def test_unmirrored_changes_make_no_call(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    result = await handlers(UPSERT, _updated(["account_id"]))
    assert result["skipped"] and result["operations"] == []
    assert simulator.log == []


async def test_delete_of_an_absent_entry_is_done(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    result = await handlers(DELETE, {"integration_id": "gone"})
    assert result["already_absent"] is True
    assert simulator.operations() == ["OmnichannelIntChange"]
    assert simulator.calls("OmnichannelIntChange")[0].code == 12002


async def test_replayed_create_and_delete_converge(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    for _ in range(2):
        await handlers(UPSERT, _created())
    assert list(simulator.entries) == ["axp-int-1"]
    for _ in range(2):
        await handlers(DELETE, {"integration_id": "int-1"})
    assert simulator.entries == {}


async def test_akixi_down_propagates_as_retryable(
    handlers: Handlers, simulator: AkixiSimulator
) -> None:
    simulator.down = True
    with pytest.raises(RetryableError):
        await handlers(UPSERT, _created())
    simulator.down = False
    await handlers(UPSERT, _created())
    assert "axp-int-1" in simulator.entries


async def test_payload_without_integration_id_is_permanent(handlers: Handlers) -> None:
    with pytest.raises(PermanentError, match="integration_id"):
        await handlers(DELETE, {})


async def test_telephony_server_scope_and_prefix_settings(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    settings = akixi_settings(
        akixi_partition_guid=None,
        akixi_telsys_id="100100",
        akixi_part_id_in_telsys="2",
        akixi_unique_id_prefix="cb-",
    )
    handlers = Handlers(AkixiClient(akixi_http, settings), settings)
    await handlers(UPSERT, _created(name=""))
    add = simulator.calls("OmnichannelIntAdd")[0].payload
    assert add["UniqueID"] == "cb-int-1" and "PartitionGUID" not in add
    assert (add["TelSysID"], add["PartIDInTelSys"]) == ("100100", "2")
    assert add["Description"] == "int-1"  # a nameless integration shows its id


async def test_sandbox_app_registers_handlers_on_the_simulator(database_url: str, engine) -> None:
    async with running_app(make_settings(database_url, sandbox=True)) as (app, _client):
        simulator = app.state.akixi_simulator
        assert simulator is not None
        upsert = app.state.destinations.get(UPSERT)
        assert upsert is not None and app.state.destinations.get(DELETE) is not None
        await call_destination(upsert, _created())
        assert simulator.entries["axp-int-1"]["Description"] == "Sales"


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
        assert app.state.akixi_simulator is None
        assert {UPSERT, DELETE} <= set(app.state.destinations.names())


async def test_unconfigured_app_registers_nothing(database_url: str, engine) -> None:
    async with running_app(make_settings(database_url)) as (app, _client):
        assert app.state.destinations.get(UPSERT) is None


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
    handlers: Handlers, simulator: AkixiSimulator, payload: dict, created: bool
) -> None:
    await handlers(UPSERT, {"integration_id": "int-1", "name": "Sales", **payload})
    first = simulator.operations()[0]
    assert first == ("OmnichannelIntAdd" if created else "OmnichannelIntChange")
