"""The requests the mirror sends, byte for byte on the wire, against seed 001's own examples.

An Akixi stand-in answers with the seed's response fixtures verbatim (their InvokeIDs line up
with the client's counter), and every request is compared element for element with the
seed's request fixture. Only Description differs: ours carries the tag that identifies the
entry as the bridge's (BRIDGE_AKIXI_DESCRIPTION_FORMAT), and the comparison swaps it in.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from channel_bridge.platforms.akixi.client import AkixiClient, InvokeIdCounter
from channel_bridge.platforms.akixi.entries import EntryNaming
from channel_bridge.platforms.akixi.mirror import mirror_delete, mirror_upsert
from channel_bridge.platforms.akixi.schemas import OmnichannelEntry
from channel_bridge.platforms.akixi.xml import build_request, parse_response
from channel_bridge.settings import Settings
from tests.akixi.conftest import akixi_settings, fixture_bytes

SESSION_ID = "EFA4902A7F61D03E42BF3222B0A246BF"
AKIXI_UNIQUE_ID = "8789a59d877f5edd:4f6f3fbd:1722c661a1d:-7fad"
# The seed's scope and LiveChat values, as settings.
SEED_SETTINGS = {
    "akixi_partition_guid": "f850b6719f95d98f:79b51bff:149bc2efbcb:-7e08",
    "akixi_telsys_id": "100100",
    "akixi_part_id_in_telsys": "2",
    "akixi_auth_user_id1": "2ty3m6f2a05297e5bbnb7b327n1afbd6",
    "akixi_auth_password1": "C4gRIuo7ZTdpW/2LejGDLfpt0N+e2YhHBa0PehmQV8s=",
    "akixi_auth_password2": "YhHGDZTdp0PehmQ4gLfWV8sCBapt0Iuo7R/2LejN+e2=",
}


def canonical(xml: bytes, *, description: str | None = None) -> str:
    root = ET.fromstring(xml)
    if description is not None:
        found = root.find("./OperationPayload/Property[@Name='Description']")
        assert found is not None
        found.text = description
    return ET.canonicalize(ET.tostring(root, encoding="unicode"), strip_text=True)


class SeedAkixi:
    """Answers CreateSession and Authenticate, then each operation with the given body."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.requests: dict[str, bytes] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        root = ET.fromstring(request.content)
        operation = root.get("Operation") or ""
        self.requests[operation] = request.content
        if operation in self.answers:
            return httpx.Response(200, content=self.answers[operation])
        invoke_id = root.findtext("InvokeID")
        session = (
            f'<Success><Property Name="SessionID">{SESSION_ID}</Property>'
            '<Property Name="Nonce">n0nce</Property></Success>'
            if operation == "CreateSession"
            else ""
        )
        body = f'<Response Result="Success"><InvokeID>{invoke_id}</InvokeID>{session}</Response>'
        return httpx.Response(200, content=body.encode())


def _list_answer(invoke_id: str, description: str) -> bytes:
    """The seed's List answer shape, for one entry of ours (UniqueID asked for, returned)."""
    return (
        f'<Response Result="Success"><InvokeID>{invoke_id}</InvokeID><Success><Container>'
        f'<Property Name="UniqueID">{AKIXI_UNIQUE_ID}</Property>'
        '<Property Name="IntegrationType">LiveChat</Property>'
        f'<Property Name="Description">{description}</Property>'
        "</Container></Success></Response>"
    ).encode()


@asynccontextmanager
async def seed_client(
    akixi: SeedAkixi, first_invoke_id: int, **overrides: object
) -> AsyncIterator[tuple[AkixiClient, Settings]]:
    settings = akixi_settings(**{**SEED_SETTINGS, **overrides})
    async with httpx.AsyncClient(transport=httpx.MockTransport(akixi)) as http:
        yield AkixiClient(http, settings, invoke_ids=InvokeIdCounter(first_invoke_id)), settings


async def test_add_is_the_seed_livechat_add() -> None:
    akixi = SeedAkixi({"OmnichannelIntAdd": fixture_bytes("add_response.xml")})
    # CreateSession 00031, Authenticate 00032, Add 00033 (the seed's InvokeID).
    async with seed_client(
        akixi, 31, akixi_unique_id_prefix="LiveChat", akixi_send_unique_id=True
    ) as (client, settings):
        result = await mirror_upsert(
            client, settings, integration_id="5918734", name="Test LiveChat", created=True
        )
    assert result == {"unique_id": "LiveChat5918734", "operations": ["OmnichannelIntAdd"]}
    sent = akixi.requests["OmnichannelIntAdd"]
    ours = "Test LiveChat [LiveChat5918734]"
    assert ET.fromstring(sent).findtext("./OperationPayload/Property[@Name='Description']") == ours
    assert canonical(sent) == canonical(fixture_bytes("add_livechat_request.xml"), description=ours)


async def test_change_is_the_seed_livechat_change_with_the_full_set() -> None:
    ours = "Test LiveChat [axp-int-1]"
    akixi = SeedAkixi(
        {
            "OmnichannelIntList": _list_answer("00033", "Old name [axp-int-1]"),
            "OmnichannelIntChange": fixture_bytes("change_response.xml"),
        }
    )
    # CreateSession 00031, Authenticate 00032, List 00033, Change 00034.
    async with seed_client(akixi, 31) as (client, settings):
        result = await mirror_upsert(
            client,
            settings,
            integration_id="int-1",
            name="Test LiveChat",
            created=False,
            changed=["name"],
        )
    assert result["unique_id"] == AKIXI_UNIQUE_ID
    sent = akixi.requests["OmnichannelIntChange"]
    expected = fixture_bytes("change_livechat_request.xml")
    assert canonical(sent) == canonical(expected, description=ours)


async def test_delete_is_the_seed_delete_after_a_disabling_change() -> None:
    akixi = SeedAkixi(
        {
            "OmnichannelIntList": _list_answer("00033", "Test LiveChat [axp-int-1]"),
            "OmnichannelIntChange": fixture_bytes("change_response.xml"),
            "OmnichannelIntDelete": fixture_bytes("delete_response.xml"),
        }
    )
    # CreateSession 00031, Authenticate 00032, List 00033, Change 00034, Delete 00035.
    async with seed_client(akixi, 31) as (client, settings):
        result = await mirror_delete(client, settings, integration_id="int-1", name="Test LiveChat")
    assert result["operations"][-1] == "OmnichannelIntDelete"
    assert canonical(akixi.requests["OmnichannelIntDelete"]) == canonical(
        fixture_bytes("delete_request.xml")
    )
    disable = ET.fromstring(akixi.requests["OmnichannelIntChange"])
    comms = disable.findtext(
        "./OperationPayload/Container[@Name='APICommunicationSettings']"
        "/Property[@Name='CommsEnabled']"
    )
    assert comms == "False"  # Akixi refuses to delete an entry whose CommsEnabled is True


@pytest.mark.parametrize(
    ("fixture", "operation", "invoke_id"),
    [
        ("add_email_request.xml", "OmnichannelIntAdd", "00033"),
        ("change_email_request.xml", "OmnichannelIntChange", "00034"),
        ("delete_request.xml", "OmnichannelIntDelete", "00035"),
        ("info_request.xml", "OmnichannelIntInfo", "00037"),
    ],
)
def test_the_builder_writes_every_seed_request(
    fixture: str, operation: str, invoke_id: str
) -> None:
    """The seed's own payload, read back and built again, is the seed's request."""
    seed = ET.fromstring(fixture_bytes(fixture))
    response = parse_response(
        fixture_bytes(fixture)
        .replace(b"<Request ", b'<Response Result="Success" ', 1)
        .replace(b"</Request>", b"</Response>")
    )
    built = build_request(
        operation,
        invoke_id=invoke_id,
        session_id=seed.findtext("SessionID"),
        payload=response.properties,
    )
    assert canonical(built) == canonical(fixture_bytes(fixture))


@pytest.mark.parametrize(
    ("fixture", "invoke_id"),
    [
        ("add_response.xml", "00033"),
        ("change_response.xml", "00034"),
        ("delete_response.xml", "00035"),
    ],
)
def test_the_parser_reads_every_seed_response(fixture: str, invoke_id: str) -> None:
    response = parse_response(fixture_bytes(fixture))
    assert response.ok and response.invoke_id == invoke_id
    assert response.entries == [] and response.properties == {}


def test_the_seed_list_answer_has_no_unique_id_and_no_entry_of_ours() -> None:
    naming = EntryNaming.from_settings(akixi_settings())
    entries = [
        OmnichannelEntry.from_properties(item)
        for item in parse_response(fixture_bytes("list_response.xml")).entries
    ]
    assert [entry.unique_id for entry in entries] == [None, None]
    assert [naming.integration_id_of(entry) for entry in entries] == [None, None]
    tagged = [
        OmnichannelEntry.from_properties(item)
        for item in parse_response(fixture_bytes("list_response_tagged.xml")).entries
    ]
    assert [naming.integration_id_of(entry) for entry in tagged] == [
        None,
        "e94e278d-72e7-48cc-80fc-dba9f8dd1c36",
    ]
