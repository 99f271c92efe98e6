"""`/axp/callbacks/{token}/integrations[/{id}]`: AXP integration lifecycle callbacks.

AXP calls the Messaging connector element's Callback URL when an Account Administrator
creates, updates or deletes an integration, and the admin's operation fails if this call
fails. So the answer must be fast, must not depend on Akixi or AXP being up, and must not
refuse a body only because its shape is new to us: AXP has not published it.

- wrong token: 404 (as an unknown path); body not JSON: 400; too large: 413;
- a body read as one change (integration_callback.py): committed with the integration row,
  the disabled channels and the queued mirror deliveries, then 200;
- anything else with the right token and a JSON (or empty) body: stored raw as an inbox
  event in the `needs_review` status, counted and logged, then 200. An operator resolves it
  (`GET /admin/v1/integrations/pending`, `channel-bridge integrations pending`).
Every alias and rule is listed in docs/axp-integration-callback.md.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from channel_bridge.deps import bridge_state
from channel_bridge.jsondoc import why_unstorable
from channel_bridge.mappings.service import INTEGRATION_INBOX_SOURCE, IntegrationService
from channel_bridge.ops.metrics import ack_seconds, webhooks
from channel_bridge.platforms.axp.callback_request import check_callback_token, read_json_document
from channel_bridge.platforms.axp.integration_callback import (
    CallbackNeedsReview,
    callback_dedupe_key,
    callback_target,
    read_integration_callback,
)

# The methods a REST-minded caller might use; the body or the method says what happened.
CALLBACK_METHODS = ["POST", "PUT", "PATCH", "DELETE"]

router = APIRouter(tags=["axp"])


def _count(outcome: str) -> None:
    webhooks.labels(INTEGRATION_INBOX_SOURCE, outcome).inc()


@router.api_route(
    "/axp/callbacks/{token}/integrations",
    methods=CALLBACK_METHODS,
    summary="AXP integration lifecycle callback (created, updated, deleted)",
    responses={400: {}, 404: {}, 413: {}},
)
async def axp_integration_callback(token: str, request: Request) -> JSONResponse:
    return await _receive(token, request, path_integration_id=None)


@router.api_route(
    "/axp/callbacks/{token}/integrations/{integration_id}",
    methods=CALLBACK_METHODS,
    summary="AXP integration lifecycle callback naming the integration in the path",
    responses={400: {}, 404: {}, 413: {}},
)
async def axp_integration_callback_for(
    token: str, integration_id: str, request: Request
) -> JSONResponse:
    return await _receive(token, request, path_integration_id=integration_id)


async def _receive(
    token: str, request: Request, *, path_integration_id: str | None
) -> JSONResponse:
    started = time.perf_counter()
    state = bridge_state(request)
    settings = state.settings
    check_callback_token(token, settings, _count, route="lifecycle")
    body = await read_json_document(request, _count, allow_empty=True)
    method = request.method
    query = dict(request.query_params)
    reading = read_integration_callback(
        body.document,
        method=method,
        path_integration_id=path_integration_id,
        query=query,
        empty=body.empty,
        our_account_id=settings.axp_account_id,
    )
    unstorable = why_unstorable(body.document)
    if unstorable is not None:
        # PostgreSQL cannot hold it as a JSON document (NUL, lone surrogates, deep nesting):
        # held with its raw text only, whatever it says.
        reading = CallbackNeedsReview([{"field": "body", "message": unstorable}])
    service = IntegrationService(
        inbox=state.inbox,
        sessionmaker=state.sessionmaker,
        planner=state.planners.integration_change,
        on_change=state.channel_cache.invalidate,
    )
    external_id = callback_dedupe_key(
        method, body.document, target=callback_target(path_integration_id, query)
    )
    raw_body = _storable_text(body.raw)
    if isinstance(reading, CallbackNeedsReview):
        held = await service.hold_for_review(
            external_id=external_id,
            method=method,
            body=None if unstorable else body.document,
            raw_body=raw_body,
            problems=reading.problems,
            hints=reading.hints,
        )
        _count("needs_review" if held.is_new else "duplicate")
        ack_seconds.labels(INTEGRATION_INBOX_SOURCE).observe(time.perf_counter() - started)
        return JSONResponse(held.ack)

    change = await service.apply_integration_change(
        action=reading.action,
        integration_id=reading.integration_id,
        name=reading.name,
        account_id=reading.account_id,
        channel_provider_id=reading.channel_provider_id,
        raw=body.document if isinstance(body.document, dict) else None,
        source="callback",
        external_id=external_id,
        raw_body=raw_body,
    )
    _count("accepted" if change.is_new else "duplicate")
    ack_seconds.labels(INTEGRATION_INBOX_SOURCE).observe(time.perf_counter() - started)
    return JSONResponse(
        change.ack or {"status": "accepted", "integrationId": reading.integration_id}
    )


def _storable_text(raw: bytes) -> str:
    """The body as text a PostgreSQL column accepts (UTF-16 JSON decodes with NULs)."""
    text = raw.decode("utf-8", "replace")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
