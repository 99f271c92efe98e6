"""The one place that knows the (unpublished) field names of Nexus Async messages.

Genesys does not publish the `Message` schema, so every field name comes from a
`BRIDGE_NEXUS_FIELD_*` setting: a comma-separated alias list, first match wins, a dotted
alias reaches into nested objects. The first alias is the name we write when we build a
message for Nexus. See docs/nexus-contract.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from channel_bridge.settings import Settings

# Logical field -> the setting that names it on the wire.
FIELD_SETTINGS: dict[str, str] = {
    "message_id": "nexus_field_message_id",
    "channel_id": "nexus_field_channel_id",
    "to": "nexus_field_to",
    "from": "nexus_field_from",
    "text": "nexus_field_text",
    "media": "nexus_field_media",
    "media_url": "nexus_field_media_url",
    "media_content_type": "nexus_field_media_content_type",
    "media_filename": "nexus_field_media_filename",
    "timestamp": "nexus_field_timestamp",
    "typing": "nexus_field_typing",
    "receipt_message_id": "nexus_field_receipt_message_id",
    "receipt_status": "nexus_field_receipt_status",
    "receipt_reason": "nexus_field_receipt_reason",
}


def parse_aliases(value: str) -> tuple[str, ...]:
    aliases = tuple(part.strip() for part in value.split(",") if part.strip())
    if not aliases:
        raise ValueError("an alias list needs at least one name")
    return aliases


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Alias lists per logical field, read once from the settings."""

    aliases: Mapping[str, tuple[str, ...]]
    # Each field's aliases split into their key paths once, not per message.
    _paths: Mapping[str, tuple[tuple[str, ...], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        paths = {
            name: tuple(tuple(a.split(".")) for a in self.aliases[name]) for name in self.aliases
        }
        object.__setattr__(self, "_paths", paths)

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldMap:
        # Built once per distinct configuration: the webhook asks for it on every message.
        return _field_map(tuple(getattr(settings, name) for name in FIELD_SETTINGS.values()))

    def get(self, document: Mapping[str, Any], field: str) -> Any:
        """The value of the first alias present (not None) in `document`, else None."""
        for path in self._paths[field]:
            value = _lookup(document, path)
            if value is not None:
                return value
        return None

    def consumed(self, document: Mapping[str, Any], field: str) -> str | None:
        """The top-level key the matching alias starts from (to tell known from unknown fields)."""
        for path in self._paths[field]:
            if _lookup(document, path) is not None:
                return path[0]
        return None

    def resolve(self, document: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
        """Every field's value as `get` gives it (None left out), and the top-level keys
        they were read from, as `consumed` gives them: one walk of the aliases."""
        values: dict[str, Any] = {}
        keys: set[str] = set()
        for name, paths in self._paths.items():
            for path in paths:
                value = _lookup(document, path)
                if value is not None:
                    values[name] = value
                    keys.add(path[0])
                    break
        return values, keys

    def put(self, document: dict[str, Any], field: str, value: Any) -> None:
        """Write `value` under the field's first alias, creating nested objects for a dotted one."""
        parts = self.aliases[field][0].split(".")
        target = document
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value

    def wire_name(self, field: str) -> str:
        return self.aliases[field][0]


def _lookup(document: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path`, or None where it is missing (both mean "not given")."""
    current: Any = document
    for part in path:
        # `type(...) is dict` first: parsed JSON is plain dicts, and the ABC check of
        # `Mapping` costs more than the lookup itself, some 28 times a message.
        if (type(current) is not dict and not isinstance(current, Mapping)) or part not in current:
            return None
        current = current[part]
    return current


@lru_cache(maxsize=16)
def _field_map(values: tuple[str, ...]) -> FieldMap:
    return FieldMap(
        {field: parse_aliases(value) for field, value in zip(FIELD_SETTINGS, values, strict=True)}
    )
