"""Akixi XML: requests shaped as the seed's examples, responses parsed safely and defensively."""

from __future__ import annotations

import base64
import hashlib
import tracemalloc
import xml.etree.ElementTree as ET

import pytest

from channel_bridge.platforms.akixi.client import InvokeIdCounter
from channel_bridge.platforms.akixi.password import password_digest
from channel_bridge.platforms.akixi.schemas import OmnichannelEntry
from channel_bridge.platforms.akixi.xml import (
    MalformedXml,
    UnsafeXml,
    build_request,
    masked_excerpt,
    parse_response,
)
from tests.akixi.conftest import fixture_bytes

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Response Result="Success"><InvokeID>00000</InvokeID><Success>&lol9;</Success></Response>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Response Result="Fail"><InvokeID>00000</InvokeID>
<Fail><ErrorMessage>&xxe;</ErrorMessage></Fail></Response>"""


def _canonical(xml: bytes) -> str:
    return ET.canonicalize(xml.decode("utf-8"), strip_text=True)


def test_add_request_is_the_seed_example_element_for_element() -> None:
    payload = {
        "UniqueID": "LiveChat5918734",
        "PartitionGUID": "f850b6719f95d98f:79b51bff:149bc2efbcb:-7e08",
        "TelSysID": "100100",
        "PartIDInTelSys": "2",
        "IntegrationType": "LiveChat",
        "Description": "Test LiveChat",
        "APICommunicationSettings": {
            "AuthUserID1": "2ty3m6f2a05297e5bbnb7b327n1afbd6",
            "AuthPassword1": "C4gRIuo7ZTdpW/2LejGDLfpt0N+e2YhHBa0PehmQV8s=",
            "AuthPassword2": "YhHGDZTdp0PehmQ4gLfWV8sCBapt0Iuo7R/2LejN+e2=",
            "CommsEnabled": "True",
        },
        "Advanced": {
            "APICommsLoggingEnabled": "False",
            "APICommsLoggingIncClassNames": "False",
            "InternalDiagDumpEnabled": "False",
        },
    }
    built = build_request(
        "OmnichannelIntAdd",
        invoke_id="00033",
        session_id="EFA4902A7F61D03E42BF3222B0A246BF",
        payload=payload,
    )
    assert _canonical(built) == _canonical(fixture_bytes("add_livechat_request.xml"))
    assert not built.startswith(b"<?xml")


def test_list_request_puts_offset_and_limit_under_request_as_the_seed() -> None:
    built = build_request(
        "OmnichannelIntList",
        invoke_id="00036",
        session_id="EFA4902A7F61D03E42BF3222B0A246BF",
        offset=100,
        limit=20,
        payload={
            "PartitionGUID": "f850b6719f95d98f:79b51bff:149bc2efbcb:-7e08",
            "TelSysID": "100100",
            "PartIDInTelSys": "2",
            "OmniChannelIntFields": "TelSysID,PartIDInTelSys,AuthUserID1,IPAddress1,CommsEnabled",
        },
    )
    assert _canonical(built) == _canonical(fixture_bytes("list_request.xml"))


def test_values_are_escaped_not_injected() -> None:
    hostile = 'Sales </Property><Property Name="CommsEnabled">False & "more"'
    built = build_request(
        "OmnichannelIntChange",
        invoke_id="00001",
        session_id="S",
        payload={"UniqueID": "axp-1", "Description": hostile},
    )
    root = ET.fromstring(built)
    properties = root.findall("./OperationPayload/Property")
    assert [(p.get("Name"), p.text) for p in properties] == [
        ("UniqueID", "axp-1"),
        ("Description", hostile),
    ]


def test_list_response_from_the_seed() -> None:
    response = parse_response(fixture_bytes("list_response.xml"))
    assert response.ok and response.invoke_id == "00036"
    entries = [OmnichannelEntry.from_properties(item) for item in response.entries]
    assert [
        (e.integration_type, e.description, e.tel_sys_id, e.comms_enabled) for e in entries
    ] == [
        ("POP3 SMTP", "Test Email", "100100", True),
        ("LiveChat", "Test LiveChat", "100100", True),
    ]
    assert entries[1].properties["APICommunicationSettings"]["AuthUserID1"] == (
        "2ty3m6f2a05297e5bbnb7b327n1afbd6"
    )


def test_add_success_response_from_the_seed() -> None:
    response = parse_response(fixture_bytes("add_response.xml"))
    assert response.ok and response.invoke_id == "00033" and response.entries == []


def test_info_response_as_printed_in_the_seed_is_read_as_success() -> None:
    response = parse_response(fixture_bytes("info_response_as_printed.xml"))
    entry = OmnichannelEntry.from_properties(response.properties)
    assert response.ok
    assert entry.unique_id == "8789a59d877f5edd:4f6f3fbd:1722c661a1d:-7fad"
    assert entry.integration_type == "POP3 SMTP" and entry.comms_enabled is True
    assert entry.properties["Advanced"]["InternalDiagDumpEnabled"] == "False"


@pytest.mark.parametrize(
    ("fixture", "code", "message"),
    [
        ("fail_synthetic_elements.xml", 12003, "Cannot delete while CommsEnabled is True"),
        ("fail_synthetic_attributes.xml", 10302, "Session has expired"),
        ("fail_synthetic_properties.xml", 11131, "Partition not found"),
    ],
)
def test_fail_code_and_message_found_in_any_plausible_shape(
    fixture: str, code: int, message: str
) -> None:
    response = parse_response(fixture_bytes(fixture))
    assert not response.ok
    assert (response.fail_code, response.fail_message) == (code, message)


def test_fail_without_a_code_parses_with_none() -> None:
    response = parse_response(b'<Response Result="Fail"><InvokeID>00001</InvokeID></Response>')
    assert not response.ok and response.fail_code is None and response.fail_message is None


def test_billion_laughs_is_refused_without_expanding() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeXml):
            parse_response(BILLION_LAUGHS)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Expanded, lol9 is 10^9 "lol"s (3 GB); refused unread, parsing stays in the kilobytes.
    assert peak < 2 * 1024 * 1024


def test_external_entity_is_refused() -> None:
    with pytest.raises(UnsafeXml):
        parse_response(EXTERNAL_ENTITY)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>502 Bad Gateway</html>",
        b"<Response Result='Maybe'/>",
        b"<Response Result='Success'><unclosed></Response>",
    ],
)
def test_non_akixi_bodies_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedXml):
        parse_response(body)


def test_masked_excerpt_hides_session_nonce_and_passwords() -> None:
    body = build_request(
        "Authenticate",
        invoke_id="00001",
        session_id="SESSION1234567890",
        payload={"UserID": "admin", "Password": "digest-value-123"},
    )
    excerpt = masked_excerpt(body)
    assert "SESSION1234567890" not in excerpt and "digest-value-123" not in excerpt
    assert "admin" in excerpt
    nonce = masked_excerpt(b'<Success><Property Name="Nonce">abcdef123</Property></Success>')
    assert "abcdef123" not in nonce


def test_invoke_id_is_a_wrapping_five_digit_counter() -> None:
    counter = InvokeIdCounter(start=99_998)
    assert [counter.next() for _ in range(4)] == ["99998", "99999", "00000", "00001"]
    assert InvokeIdCounter().next() == "00000"


def test_password_schemes() -> None:
    assert (
        password_digest("sha256-nonce", nonce="N1", password="pw")
        == hashlib.sha256(b"N1pw").hexdigest()
    )
    assert (
        password_digest("sha1-nonce", nonce="N1", password="pw")
        == hashlib.sha1(b"N1pw").hexdigest()
    )
    assert (
        password_digest("md5-nonce", nonce="N1", password="pw") == hashlib.md5(b"N1pw").hexdigest()
    )
    assert password_digest("plain", nonce="N1", password="pw") == "pw"
    raw = hashlib.sha256(b"admin|pw|N1").digest()
    template = {"digest_input": "{user}|{password}|{nonce}", "user": "admin"}
    assert password_digest("sha256-nonce", nonce="N1", password="pw", **template) == raw.hex()
    assert (
        password_digest("sha256-nonce", nonce="N1", password="pw", encoding="hex-upper", **template)
        == raw.hex().upper()
    )
    assert (
        password_digest("sha256-nonce", nonce="N1", password="pw", encoding="base64", **template)
        == base64.b64encode(raw).decode()
    )
    with pytest.raises(ValueError, match="unknown Akixi password scheme"):
        password_digest("rot13", nonce="N1", password="pw")
