"""Nexus Async wire models.

Read: the webhook body parameter is named `messages` (type `Message`), the answer is
`{"messageId": ...}`, and API responses use the `{status:{code,message}, data}` envelope.
Not read: the fields of `Message`. `NexusWebhookMessage` is therefore provisional; its field
names come only from `fields.FieldMap` (settings), and unknown fields are kept in `extra`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from channel_bridge.platforms.nexus.fields import FieldMap

# (read) the webhook's body parameter name; a bare Message object is accepted too.
BATCH_FIELD = "messages"


class MessageProblem(ValueError):
    """A webhook message we cannot use; `field` names the (logical) field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class MediaItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    content_type: str | None = None
    filename: str | None = None


class NexusWebhookMessage(BaseModel):
    """A message Digital Channels sends through the webhook (agent -> customer). Provisional."""

    message_id: str | None = None
    channel_id: str | None = None
    to: str | None = None
    from_: str | None = Field(default=None, alias="from")
    text: str | None = None
    media: list[MediaItem] = Field(default_factory=list)
    timestamp: str | None = None
    typing: bool | None = None
    # A delivery receipt for a message we sent into Nexus: its id and status (provisional,
    # same field names as the receipts we send, see docs/nexus-contract.md).
    receipt_for: str | None = None
    receipt_status: str | None = None
    # Every top-level field none of the aliases consumed, as received.
    extra: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(populate_by_name=True)

    @property
    def is_receipt(self) -> bool:
        """No content of its own, only a status about a message we sent."""
        return (
            not (self.text and self.text.strip())
            and not self.media
            and self.typing is None
            and bool(self.receipt_for and self.receipt_status)
        )

    @property
    def is_usable(self) -> bool:
        return (
            bool(self.text and self.text.strip())
            or bool(self.media)
            or self.typing is not None
            or self.is_receipt
        )


def split_batch(document: Any) -> list[Any]:
    """The messages of a webhook body: a bare Message or `{"messages": [...]}`."""
    if isinstance(document, Mapping) and BATCH_FIELD in document:
        batch = document[BATCH_FIELD]
        if isinstance(batch, Mapping):
            return [batch]
        if isinstance(batch, list):
            return batch
        raise MessageProblem(BATCH_FIELD, f"`{BATCH_FIELD}` must be an object or a list of objects")
    return [document]


def _scalar(fields: FieldMap, values: Mapping[str, Any], field: str) -> str | None:
    value = values.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MessageProblem(field, f"`{fields.wire_name(field)}` must be a string")
    return str(value)


def parse_message(document: Any, fields: FieldMap) -> NexusWebhookMessage:
    """Map one webhook message onto `NexusWebhookMessage` through the configured aliases."""
    if type(document) is not dict and not isinstance(document, Mapping):
        raise MessageProblem("message", "a message must be a JSON object")
    values, consumed = fields.resolve(document)
    media = _parse_media(values.get("media"), fields)
    typing_value = values.get("typing")
    if typing_value is not None and not isinstance(typing_value, bool):
        raise MessageProblem("typing", f"`{fields.wire_name('typing')}` must be true or false")
    return NexusWebhookMessage(
        message_id=_scalar(fields, values, "message_id"),
        channel_id=_scalar(fields, values, "channel_id"),
        to=_scalar(fields, values, "to"),
        from_=_scalar(fields, values, "from"),
        text=_scalar(fields, values, "text"),
        media=media,
        timestamp=_scalar(fields, values, "timestamp"),
        typing=typing_value,
        receipt_for=_scalar(fields, values, "receipt_message_id"),
        receipt_status=_scalar(fields, values, "receipt_status"),
        extra={k: v for k, v in document.items() if k not in consumed},
    )


def _parse_media(raw: Any, fields: FieldMap) -> list[MediaItem]:
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list):
        raise MessageProblem("media", f"`{fields.wire_name('media')}` must be a list of objects")
    items = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise MessageProblem(
                "media", f"`{fields.wire_name('media')}[{index}]` must be an object"
            )
        url = fields.get(entry, "media_url")
        if not isinstance(url, str) or not url:
            where = f"{fields.wire_name('media')}[{index}].{fields.wire_name('media_url')}"
            raise MessageProblem("media", f"`{where}` is missing")
        content_type = fields.get(entry, "media_content_type")
        filename = fields.get(entry, "media_filename")
        items.append(
            MediaItem(
                url=url,
                content_type=content_type if isinstance(content_type, str) else None,
                filename=filename if isinstance(filename, str) else None,
            )
        )
    return items


def build_inbound_message(
    fields: FieldMap,
    *,
    message_id: str,
    channel_id: str,
    from_address: str,
    to_address: str | None = None,
    text: str | None = None,
    media: Sequence[MediaItem] = (),
    timestamp: str | None = None,
) -> dict[str, Any]:
    """A customer message for the Third-Party Messaging API, named by the configured fields."""
    message: dict[str, Any] = {}
    fields.put(message, "message_id", message_id)
    fields.put(message, "channel_id", channel_id)
    fields.put(message, "from", from_address)
    if to_address is not None:
        fields.put(message, "to", to_address)
    if text is not None:
        fields.put(message, "text", text)
    if media:
        entries = []
        for item in media:
            entry: dict[str, Any] = {}
            fields.put(entry, "media_url", item.url)
            if item.content_type:
                fields.put(entry, "media_content_type", item.content_type)
            if item.filename:
                fields.put(entry, "media_filename", item.filename)
            entries.append(entry)
        fields.put(message, "media", entries)
    if timestamp is not None:
        fields.put(message, "timestamp", timestamp)
    return message


def build_receipt(
    fields: FieldMap, *, message_id: str, status: str, reason: str | None = None
) -> dict[str, Any]:
    """A delivery receipt for a message Nexus sent us, correlated by the id we answered with."""
    receipt: dict[str, Any] = {}
    fields.put(receipt, "receipt_message_id", message_id)
    fields.put(receipt, "receipt_status", status)
    if reason:
        fields.put(receipt, "receipt_reason", reason)
    return receipt


def build_typing(
    fields: FieldMap, *, channel_id: str, from_address: str, typing: bool = True
) -> dict[str, Any]:
    indicator: dict[str, Any] = {}
    fields.put(indicator, "channel_id", channel_id)
    fields.put(indicator, "from", from_address)
    fields.put(indicator, "typing", typing)
    return indicator


class Status(BaseModel):
    code: int | str | None = None
    message: str | None = None


class Envelope(BaseModel):
    """(read for media) `{status:{code,message}, data}`; assumed for the other endpoints."""

    model_config = ConfigDict(extra="allow")

    status: Status | None = None
    data: Any = None


class UploadResult(BaseModel):
    """(read) `UploadResponse.data` of `POST /channels/{channelId}/media`."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    media_id: str = Field(alias="mediaId")
    url: str
    filename: str | None = None
    mimetype: str | None = None
    length: int | None = None
