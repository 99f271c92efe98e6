"""Wire models: every spec callback example parses; what we send is strict and minimal."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from channel_bridge.platforms.axp.schemas import (
    EngagementCreatedEvent,
    EngagementErrorEvent,
    MessageEvent,
    ParticipantEvent,
    SendAsyncMessage,
    SubscriptionRequest,
    TypingEvent,
    UnknownEvent,
    dedupe_key,
    parse_callback_event,
)
from tests.axp.conftest import callback_examples, load_fixture, validate_against

EXPECTED_MODEL = {
    "MESSAGES": MessageEvent,
    "PARTICIPANT_ADDED": ParticipantEvent,
    "PARTICIPANT_DISCONNECTED": ParticipantEvent,
    "TYPING": TypingEvent,
    "ENGAGEMENT_CREATED": EngagementCreatedEvent,
    "ENGAGEMENT_ERROR": EngagementErrorEvent,
}


def test_the_fixture_covers_every_event_type() -> None:
    assert {e["eventType"] for e in callback_examples().values()} == set(EXPECTED_MODEL)
    assert len(callback_examples()) == 19


@pytest.mark.parametrize("name", sorted(callback_examples()))
def test_every_spec_callback_example_parses(name: str) -> None:
    data = callback_examples()[name]
    event = parse_callback_event(data)
    assert type(event) is EXPECTED_MODEL[data["eventType"]]
    assert event.eventType == data["eventType"]
    assert event.correlationId == data["correlationId"]
    # Nothing is lost: the model dumps back to the same document.
    assert event.model_dump(mode="json", by_alias=True, exclude_unset=True) == data


def test_message_event_fields_are_typed() -> None:
    data = callback_examples()["Message-Event-Messaging-Agent-To-Customer-Image"]
    event = parse_callback_event(data)
    assert isinstance(event, MessageEvent)
    assert event.attachments and event.attachments[0].url.startswith("/v1/media/")
    customer = event.customer_recipient()
    assert customer is not None and customer.providerParticipantId == "ad27a746b4c621a292c43f81"
    assert event.headers is not None and event.headers.sourceType == "custom:provider"


def test_extra_unknown_fields_parse_and_are_kept() -> None:
    data = dict(callback_examples()["Typing-Event"], futureField={"nested": [1, 2]})
    data["externalRecipientParticipants"] = [
        dict(data["externalRecipientParticipants"][0], newThing=True)
    ]
    event = parse_callback_event(data)
    assert isinstance(event, TypingEvent)
    assert event.model_extra == {"futureField": {"nested": [1, 2]}}
    assert event.externalRecipientParticipants[0].model_extra == {"newThing": True}


def test_unknown_event_type_is_a_generic_event() -> None:
    event = parse_callback_event(
        {"eventType": "CONVERSATION_SUMMARY", "accountId": "ABCDEF", "x": 1}
    )
    assert isinstance(event, UnknownEvent)
    assert event.eventType == "CONVERSATION_SUMMARY" and event.model_extra == {"x": 1}


def test_missing_required_fields_name_their_paths() -> None:
    data = dict(callback_examples()["Message-Event-Chat-Plain-Text-Simple"])
    del data["senderParticipantType"]
    data["body"] = {"elementText": {"text": "x"}}
    with pytest.raises(ValidationError) as caught:
        parse_callback_event(data)
    locations = {tuple(e["loc"]) for e in caught.value.errors()}
    assert locations == {("senderParticipantType",), ("body", "elementType")}


def test_dedupe_key_is_message_id_plus_status_for_messages() -> None:
    data = callback_examples()["Message-Event-Chat-Plain-Text-Simple"]
    sent = dedupe_key(parse_callback_event(data), data)
    read = dict(data, status="READ")
    assert sent == "MESSAGES:f314569c-710b-11eb-9439-0242ac130002:SENT"
    assert dedupe_key(parse_callback_event(read), read) != sent


def test_dedupe_key_for_other_events_ignores_key_order() -> None:
    data = callback_examples()["Participant-Added-Event"]
    reordered = dict(reversed(list(data.items())))
    assert dedupe_key(parse_callback_event(data), data) == dedupe_key(
        parse_callback_event(reordered), reordered
    )
    assert dedupe_key(parse_callback_event(data), data).startswith("sha256:")


def test_spec_send_example_round_trips_through_the_strict_model() -> None:
    example = load_fixture("custom_messaging_examples.json")["SendPlaintextAsyncMessage"]
    model = SendAsyncMessage.model_validate(example)
    assert model.to_wire() == example
    validate_against("send_async_message.schema.json", model.to_wire())


def test_outbound_models_refuse_unknown_fields_and_spec_violations() -> None:
    example = load_fixture("custom_messaging_examples.json")["SendPlaintextAsyncMessage"]
    with pytest.raises(ValidationError):
        SendAsyncMessage.model_validate(dict(example, attachmentIds=[]))
    with pytest.raises(ValidationError):
        SendAsyncMessage.model_validate(dict(example, senderName="x" * 71))
    with pytest.raises(ValidationError):
        SendAsyncMessage.model_validate(dict(example, customerIdentifiers={}))
    with pytest.raises(ValidationError):
        SubscriptionRequest(channelProviderId="p1", callbackUrl="https://x", eventTypes=["NOPE"])


def test_absent_optional_fields_are_not_sent() -> None:
    model = SendAsyncMessage(
        channelProviderId="prov",
        channelId="Messaging",
        businessAccountName="integration",
        customerIdentifiers={"phoneNumbers": ["+1555"]},
        body={"elementType": "text", "elementText": {"text": "hi"}},
    )
    assert model.to_wire() == {
        "channelProviderId": "prov",
        "channelId": "Messaging",
        "businessAccountName": "integration",
        "customerIdentifiers": {"phoneNumbers": ["+1555"]},
        "body": {"elementType": "text", "elementText": {"text": "hi"}},
    }
