"""The provisional message model: field names only from settings, unknown fields kept."""

from __future__ import annotations

import pytest

from channel_bridge.platforms.nexus.fields import FIELD_SETTINGS, FieldMap, parse_aliases
from channel_bridge.platforms.nexus.schemas import (
    MessageProblem,
    build_inbound_message,
    build_typing,
    parse_message,
    split_batch,
)
from channel_bridge.settings import Settings


def fields(**overrides) -> FieldMap:
    return FieldMap.from_settings(Settings(**overrides))


def test_every_field_has_a_setting_with_a_default() -> None:
    for name in FIELD_SETTINGS.values():
        assert parse_aliases(Settings.model_fields[name].default)


def test_first_alias_wins_and_dotted_paths_reach_nested_values() -> None:
    document = {
        "messageId": "second",
        "id": "first",
        "channel": {"to": {"id": "+1555"}},
        "body": "hi",
    }
    message = parse_message(document, fields())
    assert message.message_id == "first"
    assert message.to == "+1555"
    assert message.text == "hi"
    assert message.extra == {}
    assert parse_message({"messageId": "only", "text": "x"}, fields()).message_id == "only"


def test_unknown_fields_are_kept() -> None:
    message = parse_message({"text": "x", "campaign": {"id": 7}, "priority": 1}, fields())
    assert message.extra == {"campaign": {"id": 7}, "priority": 1}


def test_aliases_from_settings_change_parsing_and_building() -> None:
    custom = fields(
        nexus_field_text="content.text",
        nexus_field_from="sender.phone",
        nexus_field_message_id="msgId",
    )
    built = build_inbound_message(
        custom, message_id="m1", channel_id="c1", from_address="+1555", text="hey"
    )
    assert built == {
        "msgId": "m1",
        "channelId": "c1",
        "sender": {"phone": "+1555"},
        "content": {"text": "hey"},
    }
    parsed = parse_message(built, custom)
    assert (parsed.message_id, parsed.from_, parsed.text, parsed.channel_id) == (
        "m1",
        "+1555",
        "hey",
        "c1",
    )


def test_typing_indicator_and_batches() -> None:
    indicator = build_typing(fields(), channel_id="c1", from_address="+1555")
    assert parse_message(indicator, fields()).typing is True
    assert split_batch({"messages": [{"a": 1}, {"b": 2}]}) == [{"a": 1}, {"b": 2}]
    assert split_batch({"messages": {"a": 1}}) == [{"a": 1}]
    assert split_batch({"text": "bare"}) == [{"text": "bare"}]


@pytest.mark.parametrize(
    "document",
    [
        {"text": ["a"]},
        {"id": True, "text": "x"},
        {"media": "not-a-list"},
        {"media": [{"url": ""}]},
        {"typing": "yes"},
        "text",
    ],
)
def test_malformed_messages_name_the_field(document) -> None:
    with pytest.raises(MessageProblem) as caught:
        parse_message(document, fields())
    assert caught.value.field


def test_empty_alias_list_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_aliases(" , ")


def test_contract_doc_lists_every_nexus_setting_for_an_unread_detail() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "nexus-contract.md").read_text()
    connection = {"nexus_base_url", "nexus_ccid", "nexus_api_key", "nexus_media_max_bytes"}
    chosen = [
        name
        for name in Settings.model_fields
        if name.startswith("nexus_") and name not in connection
    ]
    assert len(chosen) >= 20
    for name in chosen:
        assert f"`{name.upper()}`" in doc, name


@pytest.mark.parametrize(
    "document",
    [
        {"id": "a", "messageId": "b", "text": None, "body": "hi", "channel": {"to": {"id": 5}}},
        {"channel": "flat", "url": "top-level", "status": "read", "x": 1},
        {"channel": {"id": None, "to": "not an object"}, "typing": False, "media": []},
        {},
    ],
)
def test_resolve_is_every_field_as_get_and_consumed_give_it(document) -> None:
    field_map = fields()
    values, keys = field_map.resolve(document)
    expected = {name: field_map.get(document, name) for name in FIELD_SETTINGS}
    assert values == {name: value for name, value in expected.items() if value is not None}
    consumed = {field_map.consumed(document, name) for name in FIELD_SETTINGS}
    assert keys == consumed - {None}
