"""Property tests: the Nexus and AXP parsers and planners either accept a document or refuse
it with their own typed error; nothing else escapes (an escaping exception would be a 500).
The Akixi XML parser refuses entity bombs and external references.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from channel_bridge.bridge.axp_to_nexus import make_axp_event_planner
from channel_bridge.bridge.nexus_to_axp import plan_nexus_message
from channel_bridge.db.models import Channel
from channel_bridge.platforms.akixi.xml import (
    MalformedXml,
    UnsafeXml,
    parse_document,
    parse_response,
)
from channel_bridge.platforms.axp.schemas import parse_callback_event
from channel_bridge.platforms.nexus.fields import FieldMap
from channel_bridge.platforms.nexus.schemas import MessageProblem, parse_message, split_batch
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.settings import Settings

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
FIELDS = FieldMap.from_settings(Settings())

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
# Documents shaped like a Nexus message, with every field possibly the wrong type.
nexus_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "messageId": json_values,
        "channelId": json_values,
        "to": json_values,
        "from": json_values,
        "text": json_values,
        "body": json_values,
        "timestamp": json_values,
        "typing": json_values,
        "media": json_values
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={"url": json_values, "contentType": json_values, "filename": json_values},
            ),
            max_size=3,
        ),
        "channel": json_values,
    },
)
AXP_EVENT_TYPES = [
    "MESSAGES",
    "CUSTOMER_MESSAGES",
    "CC_MESSAGES",
    "TYPING",
    "PARTICIPANT_ADDED",
    "PARTICIPANT_DISCONNECTED",
    "ENGAGEMENT_CREATED",
    "ENGAGEMENT_ERROR",
    "ALL",
    "X",
]
axp_like = st.fixed_dictionaries(
    {"eventType": st.sampled_from(AXP_EVENT_TYPES) | json_values},
    optional={
        "accountId": json_values,
        "eventId": json_values,
        "messageId": json_values,
        "dialogId": json_values,
        "engagementId": json_values,
        "providerDialogId": json_values,
        "channelProviderId": json_values,
        "senderParticipantType": json_values,
        "body": json_values,
        "headers": json_values,
        "customerIdentifiers": json_values,
        "status": json_values,
        "receivedAt": json_values,
        "attachments": json_values,
        "participant": json_values,
        "eventDate": json_values,
    },
)


def channel() -> Channel:
    return Channel(
        nexus_channel_id="+15550100200",
        axp_account_id="SANDBX",
        axp_channel_provider_id="provider",
        axp_integration_id="integration",
        axp_channel_id="Messaging",
        customer_identifier_key="phoneNumbers",
        enabled=True,
    )


@PROPERTY
@given(document=nexus_like | json_values)
def test_nexus_parser_accepts_or_refuses_with_message_problem(document: Any) -> None:
    try:
        messages = [parse_message(entry, FIELDS) for entry in split_batch(document)]
    except MessageProblem as exc:
        assert exc.field and exc.message
        return
    for message in messages:
        # What was accepted plans deliveries whose payload survives a JSON round trip (the
        # outbox stores it as JSON) and reads back as the same payload model.
        for request in plan_nexus_message(channel(), message, "nx-ack", None).deliveries:
            assert_survives_storage(request)
            assert request.partition_key


@PROPERTY
@given(document=axp_like | json_values)
def test_axp_callback_parser_accepts_or_refuses_with_validation_error(document: Any) -> None:
    try:
        event = parse_callback_event(document)
    except ValidationError as exc:
        assert exc.errors()
        return
    for typing_enabled in (False, True):
        for request in make_axp_event_planner(typing_enabled=typing_enabled)(event).deliveries:
            assert_survives_storage(request)


def assert_survives_storage(request: DeliveryRequest) -> None:
    stored = request.stored_payload()
    assert json.loads(json.dumps(stored)) == stored
    if isinstance(request.payload, BaseModel):
        assert (
            type(request.payload).model_validate(json.loads(json.dumps(stored))) == request.payload
        )


# --- Akixi XML --------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<Response><Property Name="x">&lol9;</Property></Response>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Response><Property Name="x">&xxe;</Property></Response>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<Response/>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Response SYSTEM "http://127.0.0.1:9/evil.dtd"><Response/>"""


@pytest.mark.parametrize(
    "document",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY, EXTERNAL_DTD],
    ids=["billion-laughs", "external-entity", "parameter-entity", "external-dtd"],
)
def test_akixi_parser_refuses_entity_bombs_and_external_references(document: bytes) -> None:
    with pytest.raises(UnsafeXml):
        parse_document(document)
    with pytest.raises(UnsafeXml):
        parse_response(document)


def test_akixi_parser_refuses_an_oversized_document_before_parsing() -> None:
    huge = b"<Response>" + b"<Property Name='x'>y</Property>" * 300_000 + b"</Response>"
    with pytest.raises(MalformedXml, match="larger than"):
        parse_document(huge)


@PROPERTY
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_akixi_parser_refuses_garbage_with_its_own_errors(body: bytes) -> None:
    try:
        parse_response(b"<Response>" + body + b"</Response>")
    except (MalformedXml, UnsafeXml):
        pass
