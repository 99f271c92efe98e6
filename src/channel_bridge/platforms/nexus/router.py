"""`POST /nexus/channels/{channelId}/webhook`: Digital Channels -> bridge (agent messages).

One URL per channel, so the verifying secret is known before the body is parsed. Nexus
wants a 2XX within 10 s and redelivers on 5XX (read): the message is committed to the inbox
with its deliveries, then answered with our own `messageId`, the same for every redelivery.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from channel_bridge.db.models import CHANNEL_BACKEND_NEXUS, Channel
from channel_bridge.deps import bridge_state
from channel_bridge.errors import (
    BridgeError,
    NotFound,
    Unauthorized,
    Unprocessable,
)
from channel_bridge.ids import random_hex_id
from channel_bridge.ops import metrics
from channel_bridge.ops.fast_path import fast_path
from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.nexus.client import TRACE_HEADER, safe_trace_id
from channel_bridge.platforms.nexus.fields import FieldMap
from channel_bridge.platforms.nexus.schemas import (
    MessageProblem,
    NexusWebhookMessage,
    parse_message,
    split_batch,
)
from channel_bridge.platforms.nexus.signing import SIGNATURE_HEADER, verify
from channel_bridge.state import State
from channel_bridge.webhooks import (
    channel_webhook_secrets,
    json_answer,
    parse_json,
    require_json,
)

log = get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)

router = APIRouter(tags=["nexus"])

SOURCE = "nexus.webhook"
ACK_PREFIX = "nx-"
# Phone numbers (+16504661149), short codes and email domains; anything else is no channel of ours.
CHANNEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9+][A-Za-z0-9+._:@-]{0,127}$")
# inbox_events.external_id is 255 characters; longer keys are hashed.
_MAX_EXTERNAL_ID = 255


def new_ack_id() -> str:
    return ACK_PREFIX + random_hex_id()


@router.post(
    "/nexus/channels/{channelId}/webhook",
    summary="Digital Channels Async webhook (one URL per channel)",
    responses={200: {"content": {"application/json": {"example": {"messageId": "nx-3f2a..."}}}}},
)
@fast_path
async def receive_webhook(channelId: str, request: Request) -> Response:
    started = time.perf_counter()
    trace_id = safe_trace_id(request.headers.get(TRACE_HEADER))
    structlog.contextvars.bind_contextvars(trace_id=trace_id)
    try:
        acks, duplicate = await _receive(channelId, request, trace_id)
    except BridgeError as exc:
        # Outcome labels are snake_case on every source (problem slugs are kebab-case).
        metrics.labelled(metrics.webhooks, SOURCE, exc.slug.replace("-", "_")).inc()
        exc.headers = {**exc.headers, TRACE_HEADER: trace_id}
        log.info("nexus webhook refused", status=exc.status, reason=exc.detail)
        raise
    metrics.labelled(metrics.webhooks, SOURCE, "duplicate" if duplicate else "accepted").inc()
    metrics.labelled(metrics.ack_seconds, SOURCE).observe(time.perf_counter() - started)
    body: dict[str, Any] = {"messageId": acks[0]}
    if len(acks) > 1:
        body["messageIds"] = acks
    return json_answer(body, {TRACE_HEADER: trace_id})


async def _receive(channel_id: str, request: Request, trace_id: str) -> tuple[list[str], bool]:
    state = bridge_state(request)
    if not CHANNEL_ID_PATTERN.match(channel_id):
        raise NotFound("No Nexus channel with this id")
    structlog.contextvars.bind_contextvars(nexus_channel_id=channel_id)
    channel = await state.channel_cache.get_enabled(channel_id)
    if channel is None or channel.backend != CHANNEL_BACKEND_NEXUS:
        raise NotFound("No enabled Nexus channel with this id")
    secrets = channel_webhook_secrets(state.channel_cache, state.secret_box, channel)

    raw = await request.body()
    match = verify(
        raw, request.headers.get(SIGNATURE_HEADER), secrets, state.settings.nexus_signature_encoding
    )
    if match is None:
        detail = (
            "X-Hub-Signature is missing"
            if not request.headers.get(SIGNATURE_HEADER)
            else "X-Hub-Signature does not match the body"
        )
        raise Unauthorized(detail)
    # In `auto` (bring-up) the matching encoding is what the operator needs to pin: say it loudly.
    # The level is checked on the stdlib logger first: a debug call that is dropped still
    # costs structlog's proxy and filter several µs, on every webhook.
    auto = state.settings.nexus_signature_encoding == "auto"
    if auto or _stdlib_log.isEnabledFor(logging.DEBUG):
        report = log.info if auto else log.debug
        report(
            "nexus signature verified",
            signature_encoding=match.encoding,
            signature_matched=match.secret_index,
        )

    require_json(request.headers.get("content-type"))
    document = parse_json(raw)
    fields = FieldMap.from_settings(state.settings)
    try:
        entries = split_batch(document)
        messages = [parse_message(entry, fields) for entry in entries]
    except MessageProblem as exc:
        raise Unprocessable(
            exc.message, errors=[{"field": exc.field, "message": exc.message}]
        ) from None
    if not messages:
        raise Unprocessable(
            "The webhook carries no message", errors=[{"field": "messages", "message": "empty"}]
        )
    for index, message in enumerate(messages):
        _check_usable(message, channel_id, fields, index)

    raw_text = raw.decode("utf-8", "replace")
    body_hash = hashlib.sha256(raw).hexdigest()
    acks: list[str] = []
    duplicate = False
    for index, (entry, message) in enumerate(zip(entries, messages, strict=True)):
        ack_id, is_new = await _accept(
            state,
            channel=channel,
            entry=entry,
            message=message,
            trace_id=trace_id,
            external_id=_dedupe_key(channel_id, message, body_hash, index, len(messages)),
            raw_body=raw_text,
        )
        acks.append(ack_id)
        duplicate = duplicate or not is_new
    return acks, duplicate


def _check_usable(
    message: NexusWebhookMessage, channel_id: str, fields: FieldMap, index: int
) -> None:
    prefix = f"messages.{index}." if index else ""
    if message.channel_id is not None and message.channel_id != channel_id:
        field = prefix + fields.wire_name("channel_id")
        raise Unprocessable(
            "The message names a different channel than the webhook URL",
            errors=[{"field": field, "message": "does not match the URL's channelId"}],
        )
    if not message.is_usable:
        names = f"`{fields.wire_name('text')}` or `{fields.wire_name('media')}`"
        raise Unprocessable(
            f"The message has neither {names}",
            errors=[
                {"field": prefix + fields.wire_name("text"), "message": "no text and no media"}
            ],
        )


def _dedupe_key(
    channel_id: str, message: NexusWebhookMessage, body_hash: str, index: int, count: int
) -> str:
    if message.is_receipt:
        # Several receipts (delivered, then read) name the same message: the status is part of it.
        key = f"{channel_id}:receipt:{message.receipt_for}:{message.receipt_status}"
        if len(key) <= _MAX_EXTERNAL_ID:
            return key
    if message.message_id:
        key = f"{channel_id}:id:{message.message_id}"
        if len(key) <= _MAX_EXTERNAL_ID:
            return key
        return f"{channel_id}:idsha256:{hashlib.sha256(message.message_id.encode()).hexdigest()}"
    suffix = f":{index}" if count > 1 else ""
    return f"{channel_id}:sha256:{body_hash}{suffix}"


async def _accept(
    state: State,
    *,
    channel: Channel,
    entry: Any,
    message: NexusWebhookMessage,
    trace_id: str,
    external_id: str,
    raw_body: str,
) -> tuple[str, bool]:
    ack_id = new_ack_id()
    # The planner is pure (no I/O), so it runs before accept and the message joins the inbox's
    # group commit; for a redelivery accept stores nothing and this plan is dropped.
    plan = state.planners.nexus_message(channel, message, ack_id, trace_id)

    payload = {
        "channelId": channel.nexus_channel_id,
        "traceId": trace_id,
        "ackId": ack_id,
        "message": entry,
        "parsed": message.model_dump(mode="json", by_alias=True, exclude={"extra"}),
    }
    acceptance = await state.inbox.accept(
        source=SOURCE,
        external_id=external_id,
        payload=payload,
        ack={"messageId": ack_id},
        kind="receipt"
        if message.is_receipt
        else "typing"
        if message.typing is not None and not message.text and not message.media
        else "message",
        raw_body=raw_body,
        deliveries=plan.deliveries,
        step=plan.step,
        step_context=plan.step_context,
    )
    stored = (acceptance.ack or {}).get("messageId", ack_id)
    log.info(
        "nexus webhook accepted",
        message_id=stored,
        nexus_message_id=message.message_id,
        is_new=acceptance.is_new,
        deliveries=len(acceptance.delivery_ids),
    )
    return stored, acceptance.is_new
