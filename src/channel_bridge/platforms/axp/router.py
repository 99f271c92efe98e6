"""`POST /axp/callbacks/{token}/notifications`: AXP Digital Notification callbacks.

AXP signs nothing, so the unguessable token in the URL is the authentication; a wrong token
gets the same 404 as a path that does not exist. AXP expects 200 within 5 s and re-sends
otherwise, so the event is stored (with the deliveries the planner derives from it) in one
commit and acknowledged; the work happens later in the relay.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from channel_bridge.deps import bridge_state
from channel_bridge.errors import (
    Unprocessable,
    UnsupportedMediaType,
    field_errors_from_pydantic,
)
from channel_bridge.ops.fast_path import fast_path
from channel_bridge.ops.logging import get_logger
from channel_bridge.ops.metrics import ack_seconds, labelled, webhooks
from channel_bridge.platforms.axp.callback_request import check_callback_token, read_json_object
from channel_bridge.platforms.axp.schemas import (
    dedupe_key,
    parse_callback_event,
)
from channel_bridge.webhooks import json_answer

log = get_logger(__name__)

SOURCE = "axp.notification"
ACK = {"status": "accepted"}

router = APIRouter(tags=["axp"])


def _is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _count(outcome: str) -> None:
    labelled(webhooks, SOURCE, outcome).inc()


@router.post(
    "/axp/callbacks/{token}/notifications",
    summary="AXP digital notification callback",
    responses={400: {}, 404: {}, 413: {}, 415: {}, 422: {}},
)
@fast_path
async def axp_notification(token: str, request: Request) -> Response:
    started = time.perf_counter()
    state = bridge_state(request)
    settings = state.settings
    check_callback_token(token, settings, _count)
    if not _is_json(request.headers.get("content-type")):
        _count("unsupported_media_type")
        raise UnsupportedMediaType("The callback body must be application/json")
    raw, data = await read_json_object(request, _count)
    try:
        event = parse_callback_event(data)
    except ValidationError as exc:
        _count("invalid")
        raise Unprocessable(
            "The callback does not match the AXP notification schema",
            errors=field_errors_from_pydantic(list(exc.errors(include_input=False))),
        ) from None

    account_id = getattr(event, "accountId", None)
    if settings.axp_account_id and account_id and account_id != settings.axp_account_id:
        # Answered 200 so a misrouted subscription is not redelivered for ever; stored nowhere.
        _count("foreign_account")
        log.warning(
            "axp callback for another account ignored",
            event_type=event.eventType,
            account_id=account_id,
        )
        return json_answer(ACK)

    plan = state.planners.axp_event(event)
    acceptance = await state.inbox.accept(
        source=SOURCE,
        external_id=dedupe_key(event, data),
        payload=data,
        deliveries=plan.deliveries,
        step=plan.step,
        step_context=plan.step_context,
        ack=ACK,
        kind=event.eventType,
        raw_body=raw.decode("utf-8", "replace"),
    )
    _count("accepted" if acceptance.is_new else "duplicate")
    labelled(ack_seconds, SOURCE).observe(time.perf_counter() - started)
    if acceptance.is_new:
        log.info(
            "axp callback accepted",
            event_type=event.eventType,
            inbox_event_id=acceptance.inbox_event_id,
            deliveries=len(acceptance.delivery_ids),
        )
    return json_answer(acceptance.ack or ACK)
