"""`POST|DELETE /axp/callbacks/{token}/integrations`: AXP integration lifecycle callbacks.

AXP calls the Messaging connector element's Callback URL when an Account Administrator
creates, updates or deletes an integration, and the admin's operation fails if this call
fails. So the answer must be fast and must not depend on Akixi or AXP being up: the change is
committed (integration row, disabled channels, queued mirror deliveries) and answered; the
relay does the rest. The payload is not published, so the model is tolerant and every alias
it accepts is listed in docs/axp-integration-callback.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from channel_bridge.errors import Unprocessable
from channel_bridge.mappings.schemas import AccountId, ChannelProviderId, IntegrationId
from channel_bridge.mappings.service import INTEGRATION_INBOX_SOURCE, IntegrationService
from channel_bridge.ops.logging import get_logger
from channel_bridge.ops.metrics import ack_seconds, webhooks
from channel_bridge.platforms.axp.callback_request import check_callback_token, read_json_object

log = get_logger(__name__)

ACTION_KEYS = ("event", "eventType", "action", "type", "operation")
# `id` last at the top level: beside a nested `integration` object it may be the event's id.
ID_KEYS = ("integrationId", "id", "businessAccountName")
NAME_KEYS = ("name", "integrationName")
ACTIONS: dict[str, Literal["created", "updated", "deleted"]] = {
    "CREATED": "created",
    "CREATE": "created",
    "UPDATED": "updated",
    "UPDATE": "updated",
    "DELETED": "deleted",
    "DELETE": "deleted",
}

router = APIRouter(tags=["axp"])


class IntegrationCallback(BaseModel):
    """The callback once its aliases are resolved; unknown fields are kept (stored raw)."""

    model_config = ConfigDict(extra="allow")

    action: Literal["created", "updated", "deleted"]
    integrationId: IntegrationId
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)] | None = None
    channelProviderId: ChannelProviderId | None = None
    accountId: AccountId | None = None


def parse_action(value: Any) -> Literal["created", "updated", "deleted"] | None:
    """CREATED, create, INTEGRATION_CREATED, integration.deleted, IntegrationUpdated... or None."""
    if not isinstance(value, str):
        return None
    word = re.sub(r"[^A-Z]", "", value.upper())
    word = word.removeprefix("INTEGRATION").removesuffix("INTEGRATION")
    return ACTIONS.get(word)


def parse_integration_callback(data: dict[str, Any], *, method: str) -> IntegrationCallback:
    """Resolve the aliases (nested `integration{}` first) and validate, naming bad paths."""
    nested = data.get("integration") if isinstance(data.get("integration"), dict) else None
    places: list[tuple[str, dict[str, Any]]] = [("integration.", nested)] if nested else []
    places.append(("", data))
    resolved: dict[str, Any] = {}
    paths: dict[str, str] = {}

    def pick(field: str, keys: tuple[str, ...], ordered: list[tuple[str, dict[str, Any]]]) -> None:
        for prefix, container in ordered:
            for key in keys:
                value = container.get(key)
                if value is None or value == "":
                    continue
                resolved[field] = str(value) if isinstance(value, int | float) else value
                paths[field] = f"body.{prefix}{key}"
                return

    if nested:
        # Beside a nested object, a top-level `id` is the event's id, not the integration's.
        pick("integrationId", ID_KEYS, [("integration.", nested)])
        if "integrationId" not in resolved:
            pick("integrationId", ("integrationId", "businessAccountName"), [("", data)])
    else:
        pick("integrationId", ID_KEYS, places)
    pick("name", NAME_KEYS, places)
    pick("channelProviderId", ("channelProviderId",), places)
    pick("accountId", ("accountId",), places)

    errors: list[dict[str, str]] = []
    action, action_path, first_seen = None, None, None
    for prefix, container in [("", data), *([("integration.", nested)] if nested else [])]:
        for key in ACTION_KEYS:
            if key not in container:
                continue
            first_seen = first_seen or (f"body.{prefix}{key}", container[key])
            action = parse_action(container[key])
            if action:
                action_path = f"body.{prefix}{key}"
                break
        if action:
            break
    if method == "DELETE":
        if action not in (None, "deleted"):
            errors.append(
                {
                    "field": action_path or "body.action",
                    "message": f"says {action!r} but the request method is DELETE",
                }
            )
        action = "deleted"
    elif action is None:
        if first_seen:
            errors.append(
                {
                    "field": first_seen[0],
                    "message": "unknown action; expected CREATED, UPDATED or DELETED "
                    "(also create/update/delete, INTEGRATION_CREATED...)",
                }
            )
        else:
            errors.append(
                {
                    "field": "body.action",
                    "message": "missing: give one of " + ", ".join(ACTION_KEYS),
                }
            )
    if "integrationId" not in resolved:
        errors.append(
            {
                "field": "body.integrationId",
                "message": "missing: give one of integrationId, id, businessAccountName "
                "(top level or inside integration{})",
            }
        )
    if errors:
        raise Unprocessable("The integration callback cannot be understood", errors=errors)
    try:
        return IntegrationCallback.model_validate({**resolved, "action": action})
    except ValidationError as exc:
        raise Unprocessable(
            "The integration callback cannot be understood",
            errors=[
                {
                    "field": paths.get(str(error["loc"][0]), "body." + str(error["loc"][0])),
                    "message": error["msg"],
                }
                for error in exc.errors(include_input=False)
            ],
        ) from None


def callback_dedupe_key(method: str, data: dict[str, Any]) -> str:
    """A retry of the same callback (same method, same JSON) is the same event."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(f"{method} {canonical}".encode()).hexdigest()


def _count(outcome: str) -> None:
    webhooks.labels(INTEGRATION_INBOX_SOURCE, outcome).inc()


@router.api_route(
    "/axp/callbacks/{token}/integrations",
    methods=["POST", "DELETE"],
    summary="AXP integration lifecycle callback (created, updated, deleted)",
    responses={400: {}, 404: {}, 413: {}, 422: {}},
)
async def axp_integration_callback(token: str, request: Request) -> JSONResponse:
    started = time.perf_counter()
    settings = request.app.state.settings
    check_callback_token(token, settings, _count)
    raw, data = await read_json_object(request, _count)
    try:
        callback = parse_integration_callback(data, method=request.method)
    except Unprocessable:
        _count("invalid")
        raise
    if (
        settings.axp_account_id
        and callback.accountId
        and callback.accountId != settings.axp_account_id
    ):
        _count("foreign_account")
        # Failing it tells the admin at once that this element points at the wrong bridge.
        raise Unprocessable(
            "The integration belongs to another AXP account",
            errors=[
                {
                    "field": "body.accountId",
                    "message": f"this bridge serves account {settings.axp_account_id}",
                }
            ],
        )

    service = IntegrationService(
        inbox=request.app.state.inbox,
        sessionmaker=request.app.state.sessionmaker,
        on_change=request.app.state.channel_cache.invalidate,
    )
    change = await service.apply_integration_change(
        action=callback.action,
        integration_id=callback.integrationId,
        name=callback.name or None,
        account_id=callback.accountId,
        channel_provider_id=callback.channelProviderId,
        raw=data,
        source="callback",
        external_id=callback_dedupe_key(request.method, data),
        raw_body=raw.decode("utf-8", "replace"),
    )
    _count("accepted" if change.is_new else "duplicate")
    ack_seconds.labels(INTEGRATION_INBOX_SOURCE).observe(time.perf_counter() - started)
    return JSONResponse(
        change.ack or {"status": "accepted", "integrationId": callback.integrationId}
    )
