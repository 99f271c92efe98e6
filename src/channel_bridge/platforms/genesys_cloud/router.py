"""`POST /genesys-cloud/integrations/{integrationId}/webhook`: Genesys Cloud -> bridge.

The Open Messaging integration's `outboundNotificationWebhookUrl` (read): agent messages,
receipts for the customer messages we sent, and typing events, as `OpenNormalizedMessage`.
One URL per integration, so the verifying secret (the integration's signature secret token)
is known before the body is parsed.

Genesys retries up to 5 times on a timeout (10 s) or a 429/5xx, and shows the agent a failed
message for any other non-2xx (read). So the event is committed to the inbox with its
deliveries and then answered 200, the same answer for every retry; what happens after that
(a relay that fails for good) goes back to the agent as a Failed receipt, not as an HTTP error.
"""

from __future__ import annotations

import hashlib
import re
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from channel_bridge.db.models import CHANNEL_BACKEND_GENESYS_CLOUD
from channel_bridge.deps import bridge_state
from channel_bridge.errors import BridgeError, NotFound, Unauthorized, Unprocessable
from channel_bridge.ids import random_hex_id
from channel_bridge.ops import metrics
from channel_bridge.ops.fast_path import fast_path
from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.genesys_cloud.schemas import OpenNormalizedMessage
from channel_bridge.platforms.genesys_cloud.signing import SIGNATURE_HEADER, verify
from channel_bridge.webhooks import channel_webhook_secrets, parse_json, require_json

log = get_logger(__name__)

router = APIRouter(tags=["genesys-cloud"])

SOURCE = "genesys_cloud.webhook"
ACK_PREFIX = "gc-"
# Integration ids are UUIDs (read); anything else is no integration of ours.
INTEGRATION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# inbox_events.external_id is 255 characters; longer keys are hashed.
_MAX_EXTERNAL_ID = 255


@router.post(
    "/genesys-cloud/integrations/{integrationId}/webhook",
    summary="Genesys Cloud Open Messaging outbound webhook (one URL per integration)",
    responses={200: {"content": {"application/json": {"example": {"messageId": "gc-3f2a..."}}}}},
)
@fast_path
async def receive_webhook(integrationId: str, request: Request) -> JSONResponse:
    started = time.perf_counter()
    try:
        ack_id, duplicate = await _receive(integrationId, request)
    except BridgeError as exc:
        metrics.labelled(metrics.webhooks, SOURCE, exc.slug).inc()
        log.info("genesys cloud webhook refused", status=exc.status, reason=exc.detail)
        raise
    metrics.labelled(metrics.webhooks, SOURCE, "duplicate" if duplicate else "accepted").inc()
    metrics.labelled(metrics.ack_seconds, SOURCE).observe(time.perf_counter() - started)
    return JSONResponse({"messageId": ack_id})


async def _receive(integration_id: str, request: Request) -> tuple[str, bool]:
    state = bridge_state(request)
    if not INTEGRATION_ID_PATTERN.match(integration_id):
        raise NotFound("No Genesys Cloud integration with this id")
    channel = await state.channel_cache.get_enabled(integration_id)
    if channel is None or channel.backend != CHANNEL_BACKEND_GENESYS_CLOUD:
        raise NotFound("No enabled Genesys Cloud channel for this integration id")
    secrets = channel_webhook_secrets(state.channel_cache, state.secret_box, channel)

    raw = await request.body()
    header = request.headers.get(SIGNATURE_HEADER)
    if verify(raw, header, secrets) is None:
        raise Unauthorized(
            f"{SIGNATURE_HEADER} is missing"
            if not header
            else f"{SIGNATURE_HEADER} does not match the body"
        )
    require_json(request.headers.get("content-type"))
    document = parse_json(raw)
    try:
        message = OpenNormalizedMessage.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise Unprocessable(
            f"The body is not an OpenNormalizedMessage: {field}: {first['msg']}",
            errors=[
                {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
                for e in exc.errors()
            ],
        ) from None
    if message.channel.id is not None and message.channel.id != integration_id:
        raise Unprocessable(
            "The message names a different integration than the webhook URL",
            errors=[{"field": "channel.id", "message": "does not match the URL's integrationId"}],
        )

    ack_id = ACK_PREFIX + random_hex_id()
    # The planner is pure (no I/O): it runs before accept so the event joins the group commit.
    plan = state.planners.genesys_cloud_message(channel, message, ack_id)
    acceptance = await state.inbox.accept(
        source=SOURCE,
        external_id=_dedupe_key(integration_id, message, raw),
        payload={
            "integrationId": integration_id,
            "ackId": ack_id,
            "message": document,
        },
        ack={"messageId": ack_id},
        kind=_kind(message),
        raw_body=raw.decode("utf-8", "replace"),
        deliveries=plan.deliveries,
        step=plan.step,
        step_context=plan.step_context,
    )
    stored = (acceptance.ack or {}).get("messageId", ack_id)
    log.info(
        "genesys cloud webhook accepted",
        message_id=stored,
        genesys_message_id=message.id,
        type=message.type,
        is_new=acceptance.is_new,
        deliveries=len(acceptance.delivery_ids),
    )
    return stored, not acceptance.is_new


def _kind(message: OpenNormalizedMessage) -> str:
    if message.type == "Receipt":
        return "receipt"
    if message.is_typing:
        return "typing"
    return "message" if message.type != "Event" else "event"


def _dedupe_key(integration_id: str, message: OpenNormalizedMessage, raw: bytes) -> str:
    """A retry of the same webhook is the same event: keyed by what identifies it."""
    if message.type == "Receipt":
        # Several receipts name the same message: the status is part of it.
        key = f"{integration_id}:receipt:{message.id}:{message.status}"
    elif message.type == "Event":
        # (read) id and time together identify a message; an event's id may repeat.
        key = f"{integration_id}:event:{message.id}:{message.channel.time}"
    else:
        key = f"{integration_id}:id:{message.id}"
    if len(key) <= _MAX_EXTERNAL_ID:
        return key
    return f"{integration_id}:sha256:{hashlib.sha256(raw).hexdigest()}"
